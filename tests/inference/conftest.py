from tests.inference.served import served_models

__all__ = ["served_models"]
