"""Pure image math: text ink, title choice, depth layers and roles, classical fallbacks, previews."""
