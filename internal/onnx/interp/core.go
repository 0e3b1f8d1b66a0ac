package interp

import "fmt"

// addCoreOps registers the elementwise, matrix, activation, shape and cast operators.
func addCoreOps(t ops) {
	binary := checkInputs(2, 2)
	unary := checkInputs(1, 1)
	t["Add"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: binaryKernel(opAdd), Fresh: true}
	t["Sub"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: binaryKernel(opSub), Fresh: true}
	t["Mul"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: binaryKernel(opMul), Fresh: true}
	t["Div"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: binaryKernel(opDiv), Fresh: true}
	t["Gemm"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: checkGemm, Run: gemm, Fresh: true}
	t["MatMul"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: binary, Run: matmul, Fresh: true}
	t["Relu"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: unary, Run: reluOp().kernel(), Fresh: true, InPlace: reluOp().inPlace()}
	t["Sigmoid"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: unary, Run: sigmoidOp().kernel(), Fresh: true, InPlace: sigmoidOp().inPlace()}
	t["Tanh"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: unary, Run: tanhOp().kernel(), Fresh: true, InPlace: tanhOp().inPlace()}
	t["Softmax"] = Op{MinOpset: 13, MaxOpset: MaxOpset, Check: unary, Run: softmaxKernel(false), Fresh: true, InPlace: softmaxInPlace(false)}
	t["LogSoftmax"] = Op{MinOpset: 13, MaxOpset: MaxOpset, Check: unary, Run: softmaxKernel(true), Fresh: true, InPlace: softmaxInPlace(true)}
	t["Flatten"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: unary, Run: flatten, View: true}
	t["Reshape"] = Op{MinOpset: 5, MaxOpset: MaxOpset, Check: checkReshape, Run: reshape, View: true}
	t["Transpose"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: all(unary, checkTranspose), Run: transpose, Fresh: true}
	t["Concat"] = Op{MinOpset: 4, MaxOpset: MaxOpset, Check: checkConcat, Run: concat, Fresh: true}
	t["Identity"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: unary, Run: identity, View: true}
	t["Cast"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: all(unary, checkCast), Run: cast, Fresh: true}
	t["Constant"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: checkConstant, Run: constant}
	addMathOps(t) // math.go
}

func reluOp() unaryOp {
	return unaryOp{f32: reluF32, i8: reluInt[int8], i32: reluInt[int32], i64: reluInt[int64]}
}
func sigmoidOp() unaryOp { return unaryOp{f32: sigmoidF32} }
func tanhOp() unaryOp    { return unaryOp{f32: tanhF32} }

// checkInputs returns a Check that requires between lo and hi inputs, all
// present.
func checkInputs(lo, hi int) func(n *Node) error {
	return func(n *Node) error {
		in := n.Proto.GetInput()
		if len(in) < lo || len(in) > hi {
			if lo == hi {
				return fmt.Errorf("%d inputs, want %d", len(in), lo)
			}
			return fmt.Errorf("%d inputs, want %d to %d", len(in), lo, hi)
		}
		for i, name := range in {
			if name == "" {
				return fmt.Errorf("input %d is empty", i)
			}
		}
		if len(n.Proto.GetOutput()) != 1 || n.Proto.GetOutput()[0] == "" {
			return fmt.Errorf("%d outputs, want 1", len(n.Proto.GetOutput()))
		}
		return nil
	}
}

// all combines checks, returning the first error.
func all(checks ...func(n *Node) error) func(n *Node) error {
	return func(n *Node) error {
		for _, c := range checks {
			if err := c(n); err != nil {
				return err
			}
		}
		return nil
	}
}
