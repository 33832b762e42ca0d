"""An embedding model behind Triton: one uint8 image crop in, one L2-normalised vector out."""

from __future__ import annotations

import numpy as np

from streamer.inference.client import InferTiming, ModelSpec, TritonModel

NORM_EPSILON = 1e-12


def l2_normalise(vector: np.ndarray) -> np.ndarray:
    """Unit length, so a dot product is the cosine similarity."""
    vector = np.asarray(vector, np.float32).reshape(-1)
    return (vector / max(float(np.linalg.norm(vector)), NORM_EPSILON)).astype(np.float32)


def image_input(spec: ModelSpec) -> tuple[str, int, int]:
    """Name, height and width of a prepared model's uint8 HxWx3 input; refuses anything else."""
    tensor = spec.input()
    if len(tensor.shape) != 3 or tensor.shape[2] != 3 or tensor.dtype != np.uint8:
        raise ValueError(
            f"model '{spec.name}': input '{tensor.name}' must be uint8 HxWx3 frames, got "
            f"{tensor.dtype} {tensor.shape}; prepare it with `streamer models prepare {spec.name}`"
        )
    if min(tensor.shape[:2]) <= 0:
        raise ValueError(f"model '{spec.name}': input '{tensor.name}' needs fixed height and width")
    return tensor.name, tensor.shape[0], tensor.shape[1]


class EmbeddingModel:
    """Face or person embedder; the embedding size is read from the served model."""

    def __init__(self, model: TritonModel) -> None:
        self.model = model
        self.input_name = ""
        self.output_name = ""
        self.height = self.width = 0
        self.embedding_size = 0

    def configure(self, spec: ModelSpec) -> None:
        self.input_name, self.height, self.width = image_input(spec)
        if len(spec.outputs) != 1 or len(spec.outputs[0].shape) != 1 or spec.outputs[0].shape[0] <= 0:
            shapes = [(o.name, o.shape) for o in spec.outputs]
            raise ValueError(
                f"model '{spec.name}': expected one output of fixed size [D], got {shapes}"
            )
        self.output_name = spec.outputs[0].name
        self.embedding_size = spec.outputs[0].shape[0]

    async def embed(self, crop: np.ndarray) -> tuple[np.ndarray, InferTiming]:
        """`crop` is uint8 BGR already at the model's input size."""
        if crop.shape != (self.height, self.width, 3):
            raise ValueError(f"crop of shape {crop.shape}, model wants {(self.height, self.width, 3)}")
        outputs, timing = await self.model.infer({self.input_name: crop})
        return l2_normalise(outputs[self.output_name]), timing
