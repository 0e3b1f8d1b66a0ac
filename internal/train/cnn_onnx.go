package train

import (
	"io"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// ExportONNX writes the CNN as an ONNX graph (opset ONNXOpset) named name:
// input ONNXInput float32 [N, 1, 28, 28], then Conv, Relu, MaxPool, Conv,
// Relu, MaxPool, Flatten, Gemm and Softmax (axis 1) producing ONNXOutput
// float32 [N, 10]. The bytes depend only on the weights and name.
func (c *CNN) ExportONNX(w io.Writer, name string) error {
	data, err := c.MarshalONNX(name)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// MarshalONNX is ExportONNX into a byte slice.
func (c *CNN) MarshalONNX(name string) ([]byte, error) {
	conv := []onnx.Attr{
		onnx.AttrInts("kernel_shape", cnnK, cnnK),
		onnx.AttrInts("pads", 1, 1, 1, 1),
		onnx.AttrInts("strides", 1, 1),
	}
	pool := []onnx.Attr{
		onnx.AttrInts("kernel_shape", 2, 2),
		onnx.AttrInts("strides", 2, 2),
	}
	b := onnx.NewBuilder(name, ONNXOpset).
		SetDoc("convolutional network conv3x3(8)-pool-conv3x3(16)-pool-fc(10) on 1x28x28 images, trained by outpost internal/train").
		SetMetadata("outpost.train.arch", "cnn-8-16-10").
		Input(ONNXInput, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(CNNChannels), onnx.D(CNNSide), onnx.D(CNNSide)).
		Float32("conv1.weight", c.Conv1W, CNNConv1, CNNChannels, cnnK, cnnK).
		Float32("conv1.bias", c.Conv1B, CNNConv1).
		Float32("conv2.weight", c.Conv2W, CNNConv2, CNNConv1, cnnK, cnnK).
		Float32("conv2.bias", c.Conv2B, CNNConv2).
		Float32("fc.weight", c.FCW, cnnFlat, CNNClasses).
		Float32("fc.bias", c.FCB, CNNClasses).
		Node("Conv", "conv1", []string{ONNXInput, "conv1.weight", "conv1.bias"}, []string{"conv1"}, conv...).
		Node("Relu", "relu1", []string{"conv1"}, []string{"relu1"}).
		Node("MaxPool", "pool1", []string{"relu1"}, []string{"pool1"}, pool...).
		Node("Conv", "conv2", []string{"pool1", "conv2.weight", "conv2.bias"}, []string{"conv2"}, conv...).
		Node("Relu", "relu2", []string{"conv2"}, []string{"relu2"}).
		Node("MaxPool", "pool2", []string{"relu2"}, []string{"pool2"}, pool...).
		Node("Flatten", "flatten", []string{"pool2"}, []string{"flatten"}, onnx.AttrInt("axis", 1)).
		Node("Gemm", "fc", []string{"flatten", "fc.weight", "fc.bias"}, []string{"fc"}).
		Node("Softmax", "softmax", []string{"fc"}, []string{ONNXOutput}, onnx.AttrInt("axis", 1)).
		Output(ONNXOutput, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(CNNClasses))
	return b.Marshal()
}
