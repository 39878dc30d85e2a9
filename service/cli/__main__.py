"""`python -m service.cli`: the same as the `scenematch` entry point."""
from service.cli import app

app()
