"""Triton Python-backend model that runs `model.onnx` with ONNX Runtime on CPU.

Used only by the embedded server: the bundled tritonserver has no ONNX Runtime backend, so every
model in the repository is served through this file. Requests that Triton's dynamic batcher hands
over together are concatenated into one ONNX Runtime run, so batching works as on a GPU server;
with `ort_one_image_per_run` (instances of one thread, no dynamic batching) each image of a
request runs alone, the fastest way for such a session.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # provided by the Python backend


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("ort_intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        # Requests arrive in bursts: spinning worker threads would busy-wait between them and
        # steal the CPU that decoding and the service need (they are on the same cores here).
        spinning = parameters.get("ort_allow_spinning", "0")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        # One image per run where a batch is no faster per image (a one-thread session on a CPU):
        # a request may still carry several, which saves a request's overhead per image.
        self.one_per_run = self.batched and parameters.get("ort_one_image_per_run", "0") == "1"

    def _run_one_at_a_time(self, item):
        count = len(item[self.input_names[0]])
        if count <= 1:
            return self.session.run(self.output_names, item)
        runs = [
            self.session.run(self.output_names, {n: v[i : i + 1] for n, v in item.items()})
            for i in range(count)
        ]
        return [np.concatenate(parts) for parts in zip(*runs)]

    def execute(self, requests):
        inputs = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names}
            for r in requests
        ]
        if self.one_per_run:
            results = [self._run_one_at_a_time(item) for item in inputs]
        elif self.batched and len(requests) > 1:
            sizes = [len(item[self.input_names[0]]) for item in inputs]
            feed = {n: np.concatenate([item[n] for item in inputs]) for n in self.input_names}
            outputs = self.session.run(self.output_names, feed)
            bounds = np.cumsum(sizes)[:-1]
            per_request = [np.split(out, bounds) for out in outputs]
            results = [[parts[i] for parts in per_request] for i in range(len(requests))]
        else:
            results = [self.session.run(self.output_names, item) for item in inputs]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(value))
                    for name, value in zip(self.output_names, values)
                ]
            )
            for values in results
        ]

    def finalize(self):
        self.session = None
