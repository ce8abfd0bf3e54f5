"""Stage CLIs. Each module here defines `register(subparsers)`; main.py discovers them."""
