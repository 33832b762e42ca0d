"""The bottom of the house: types and operations every stage shares; imports nothing above it."""
