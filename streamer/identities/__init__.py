"""Faces, person re-identification and identities across cameras (stage after tracking)."""
