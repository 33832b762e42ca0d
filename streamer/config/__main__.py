"""`python -m streamer.config > docs/configuration.md`"""

from streamer.config.reference import reference_markdown

print(reference_markdown(), end="")
