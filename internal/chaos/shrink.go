package chaos

// Shrink looks for a shorter plan than steps that still fails. It first
// tries the window of the failure: the plan's opening steps (those before
// its first fault, which push, sign and deploy the first versions) and the
// steps after the last check, since what breaks has most often broken since
// the last check, and a run of that costs a fraction of the whole. Then,
// by delta debugging (Zeller's ddmin), it tries to drop ever smaller slices
// of the steps, keeping every reduction that still fails. fails runs a
// candidate and reports whether it failed; Shrink calls it at most budget
// times and returns the shortest failing plan it found (steps itself when
// none) and the number of runs it made. The last step (the final Check) is
// always kept, and so is the order of the steps.
func Shrink(steps []Step, fails func([]Step) bool, budget int) (shortest []Step, runs int) {
	if len(steps) < 2 {
		return steps, 0
	}
	last := steps[len(steps)-1]
	cur := append([]Step(nil), steps[:len(steps)-1]...)
	with := func(s []Step) []Step { return append(append([]Step(nil), s...), last) }
	if w := window(cur); len(w) < len(cur) && runs < budget {
		runs++
		if fails(with(w)) {
			cur = w
		}
	}
	n := 2
	for len(cur) > 0 && runs < budget {
		chunk := (len(cur) + n - 1) / n
		reduced := false
		// Try each complement: cur without one chunk.
		for start := 0; start < len(cur) && runs < budget; start += chunk {
			end := min(start+chunk, len(cur))
			cand := append(append([]Step(nil), cur[:start]...), cur[end:]...)
			runs++
			if fails(with(cand)) {
				cur = cand
				n = max(n-1, 2)
				reduced = true
				break
			}
		}
		if reduced {
			continue
		}
		if chunk == 1 {
			break // every single step is needed
		}
		n = min(2*n, len(cur))
	}
	return with(cur), runs
}

// window returns the opening steps of steps (those before the first fault)
// and the steps after the last Check.
func window(steps []Step) []Step {
	open := len(steps)
	for i, s := range steps {
		if s.Kind.IsFault() {
			open = i
			break
		}
	}
	lastCheck := -1
	for i, s := range steps {
		if s.Kind == Check {
			lastCheck = i
		}
	}
	out := append([]Step(nil), steps[:open]...)
	return append(out, steps[max(lastCheck+1, open):]...)
}
