"""Runs a TensorFlow Lite model with Arm NN's TensorFlow Lite parser on the
reference CPU backend (CpuRef), for the tests of internal/tflite.

usage: armnn_run.py MODEL.tflite INPUT.f32 OUTPUT.f32

INPUT.f32 holds float32 samples (little-endian) for the model's single
input, batch after batch of the input's shape; OUTPUT.f32 receives the
model's single output for each batch, as float32. Prints Arm NN's version.
"""
import sys

import numpy as np
import pyarmnn as ann


def main(model, inp, outp):
    parser = ann.ITfLiteParser()
    network = parser.CreateNetworkFromBinaryFile(model)
    in_name = parser.GetSubgraphInputTensorNames(0)[0]
    out_name = parser.GetSubgraphOutputTensorNames(0)[0]
    in_info = parser.GetNetworkInputBindingInfo(0, in_name)
    out_info = parser.GetNetworkOutputBindingInfo(0, out_name)
    runtime = ann.IRuntime(ann.CreationOptions())
    opt, _ = ann.Optimize(network, [ann.BackendId("CpuRef")], runtime.GetDeviceSpec(), ann.OptimizerOptions())
    net_id, _ = runtime.LoadNetwork(opt)
    shape = tuple(in_info[1].GetShape()[i] for i in range(in_info[1].GetNumDimensions()))
    per = int(np.prod(shape))
    data = np.fromfile(inp, dtype="<f4")
    if data.size % per:
        raise SystemExit("%d values are not whole batches of %s" % (data.size, shape))
    outs = []
    for b in range(data.size // per):
        x = data[b * per:(b + 1) * per].reshape(shape)
        ins = ann.make_input_tensors([in_info], [x])
        ots = ann.make_output_tensors([out_info])
        runtime.EnqueueWorkload(net_id, ins, ots)
        outs.append(ann.workload_tensors_to_ndarray(ots)[0].astype("<f4").ravel())
    np.concatenate(outs).tofile(outp)
    print("armnn", ann.ARMNN_VERSION if hasattr(ann, "ARMNN_VERSION") else ann.GetVersion())


if __name__ == "__main__":
    main(*sys.argv[1:4])
