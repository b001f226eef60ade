"""Word lists and the deterministic title, tagline and credits generators."""

from __future__ import annotations

import re

import numpy as np

_ADJECTIVES = (
    "last", "silent", "hidden", "broken", "golden", "lost", "final", "crimson", "endless", "frozen",
    "burning", "distant", "quiet", "wild", "dark", "bright", "hollow", "secret", "forgotten", "electric",
    "savage", "gentle", "iron", "velvet", "midnight", "northern", "long", "little", "empty", "second",
)
_NOUNS = (
    "harbor", "river", "garden", "signal", "kingdom", "winter", "summer", "mirror", "horizon", "letter",
    "orchard", "frontier", "engine", "shadow", "island", "station", "promise", "canyon", "lantern", "empire",
    "voyage", "harvest", "witness", "machine", "valley", "storm", "circus", "border", "compass", "archive",
)
# Words each genre leans on, mixed with the shared pool so that titles hint at the genre.
_GENRE_NOUNS = {
    "horror": ("night", "hunger", "cellar", "curse", "grave", "whisper", "ritual", "hollow"),
    "scifi": ("orbit", "nebula", "colony", "android", "eclipse", "protocol", "starship", "void"),
    "romance": ("heart", "kiss", "letters", "honeymoon", "serenade", "roses", "vows", "paris"),
    "comedy": ("wedding", "road trip", "vacation", "neighbors", "roommate", "karaoke", "reunion", "chaos"),
    "western": ("outlaw", "rider", "sheriff", "gold", "dust", "mesa", "stagecoach", "gunslinger"),
    "documentary": ("ocean", "forest", "climate", "factory", "coffee", "city", "bees", "glacier"),
    "action": ("strike", "mission", "target", "pursuit", "fury", "protocol", "heist", "impact"),
    "drama": ("family", "daughter", "house", "season", "testament", "silence", "crossing", "inheritance"),
}
_TAGLINES = {
    "horror": ("Some doors should stay closed.", "It knows your name.", "Nobody leaves before dawn."),
    "scifi": ("The signal was never meant for us.", "Something waits out there.", "Earth is listening."),
    "romance": ("Some letters arrive just in time.", "One summer. One chance.", "Love keeps no schedule."),
    "comedy": ("What could possibly go wrong?", "Family is complicated.", "They had one job."),
    "western": ("Justice rides alone.", "The frontier remembers.", "Every town has a price."),
    "documentary": ("The true story of a changing world.", "Seen as never before.", "One year. One valley."),
    "action": ("No rules. No retreat.", "The clock is ticking.", "Only one way out."),
    "drama": ("Every family has a secret.", "Home is where it began.", "Some choices last forever."),
}
_FIRST = (
    "Anna", "Marco", "Lena", "David", "Sofia", "Omar", "Clara", "Ivan", "Maya", "Felix", "Rosa", "Hugo",
    "Nora", "Tomas", "Elise", "Jonah", "Ines", "Kenji", "Lucia", "Peter",
)
_LAST = (
    "Hartley", "Moreau", "Lindqvist", "Okafor", "Bianchi", "Novak", "Castillo", "Weber", "Tanaka", "Brennan",
    "Duval", "Costa", "Farrell", "Ivanova", "Keller", "Lambert", "Mendes", "Quinn", "Sato", "Varga",
)
_STUDIOS = ("NORTHLIGHT", "BLUE FERN", "HALCYON", "REDWOOD", "MERIDIAN", "SILVERLINE", "ATLAS", "KESTREL")


def _pick(rng: np.random.Generator, seq: tuple[str, ...]) -> str:
    return seq[int(rng.integers(len(seq)))]


def make_title(rng: np.random.Generator, genre: str) -> str:
    """A plausible title in title case, drawn from shared and genre-specific words."""
    nouns = _NOUNS + _GENRE_NOUNS.get(genre, ())
    adj, noun, other = _pick(rng, _ADJECTIVES), _pick(rng, nouns), _pick(rng, nouns)
    pattern = int(rng.integers(8))
    words = [
        f"the {adj} {noun}",
        f"{noun} of the {other}",
        f"{adj} {noun}",
        f"the {noun}",
        f"return to {other}",
        f"{noun} and {other}",
        f"beyond the {adj} {noun}",
        f"{noun}",
    ][pattern]
    small = {"of", "the", "and", "to", "a"}
    parts = words.split()
    return " ".join(w if (i and w in small) else w.capitalize() for i, w in enumerate(parts))


def make_tagline(rng: np.random.Generator, genre: str) -> str:
    return _pick(rng, _TAGLINES.get(genre, _TAGLINES["drama"]))


def make_credits(rng: np.random.Generator, title: str, year: int) -> list[str]:
    """A billing block: studio line, cast and crew line, release line (upper case)."""
    names = [f"{_pick(rng, _FIRST)} {_pick(rng, _LAST)}".upper() for _ in range(6)]
    studio = _pick(rng, _STUDIOS)
    return [
        f"{studio} PICTURES PRESENTS  A {names[0].split()[1]} FILM  {title.upper()}",
        f"STARRING {names[1]}  {names[2]}  {names[3]}  MUSIC BY {names[4]}  DIRECTED BY {names[0]}",
        f"PRODUCED BY {names[5]}  IN THEATERS {year}",
    ]


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
