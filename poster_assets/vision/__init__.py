"""Pure image math: text ink, title choice, depth layers, their fusion with the foreground mask
and title ink, roles, classical fallbacks, previews."""
