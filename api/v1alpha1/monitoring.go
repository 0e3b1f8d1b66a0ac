package v1alpha1

import (
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults of Monitoring.
const (
	DefaultWindowSamples  = 1000
	DefaultWindowDuration = 10 * time.Minute
	DefaultAlpha          = 0.01
	DefaultMinSamples     = 100
	DefaultPSIThreshold   = 0.25
	DefaultRaiseAfter     = 1
	DefaultClearAfter     = 3
)

// Corrections of Monitoring.
const (
	CorrectionBonferroni        = "Bonferroni"
	CorrectionBenjaminiHochberg = "BenjaminiHochberg"
)

// AlphaValue is Alpha as a number, or its default.
func (m *Monitoring) AlphaValue() float64 { return decimalOr(m.Alpha, DefaultAlpha) }

// PSIThresholdValue is PSIThreshold as a number, or its default.
func (m *Monitoring) PSIThresholdValue() float64 {
	return decimalOr(m.PSIThreshold, DefaultPSIThreshold)
}

// WindowDurationValue is WindowDuration, or its default.
func (m *Monitoring) WindowDurationValue() time.Duration {
	if m.WindowDuration == nil {
		return DefaultWindowDuration
	}
	return m.WindowDuration.Duration
}

// WindowSamplesValue is WindowSamples, or its default.
func (m *Monitoring) WindowSamplesValue() int { return intOr(m.WindowSamples, DefaultWindowSamples) }

// MinSamplesValue is MinSamples, or its default.
func (m *Monitoring) MinSamplesValue() int { return intOr(m.MinSamples, DefaultMinSamples) }

// RaiseAfterValue is RaiseAfter, or its default.
func (m *Monitoring) RaiseAfterValue() int { return intOr(m.RaiseAfter, DefaultRaiseAfter) }

// ClearAfterValue is ClearAfter, or its default.
func (m *Monitoring) ClearAfterValue() int { return intOr(m.ClearAfter, DefaultClearAfter) }

// CooldownValue is Cooldown, or 0.
func (m *Monitoring) CooldownValue() time.Duration {
	if m.Cooldown == nil {
		return 0
	}
	return m.Cooldown.Duration
}

// CorrectionValue is Correction, or its default.
func (m *Monitoring) CorrectionValue() string {
	if m.Correction == "" {
		return CorrectionBonferroni
	}
	return m.Correction
}

func decimalOr(s string, def float64) float64 {
	if s == "" {
		return def
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return def
	}
	return v
}

func intOr(v int32, def int) int {
	if v <= 0 {
		return def
	}
	return int(v)
}

func (m *Monitoring) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if m.WindowSamples != 0 && (m.WindowSamples < 10 || m.WindowSamples > 1_000_000) {
		errs = append(errs, field.Invalid(p.Child("windowSamples"), m.WindowSamples, "must be between 10 and 1000000"))
	}
	if d := m.WindowDuration; d != nil && d.Duration < time.Second {
		errs = append(errs, field.Invalid(p.Child("windowDuration"), d.Duration.String(), "must be at least 1s"))
	}
	if m.Alpha != "" {
		if v, err := strconv.ParseFloat(m.Alpha, 64); err != nil || !(v > 0 && v < 1) {
			errs = append(errs, field.Invalid(p.Child("alpha"), m.Alpha, "must be a decimal between 0 and 1, such as 0.01"))
		}
	}
	switch m.Correction {
	case "", CorrectionBonferroni, CorrectionBenjaminiHochberg:
	default:
		errs = append(errs, field.NotSupported(p.Child("correction"), m.Correction, []string{CorrectionBonferroni, CorrectionBenjaminiHochberg}))
	}
	if m.MinSamples < 0 {
		errs = append(errs, field.Invalid(p.Child("minSamples"), m.MinSamples, "must be positive"))
	}
	if m.PSIThreshold != "" {
		if v, err := strconv.ParseFloat(m.PSIThreshold, 64); err != nil || v < 0 || v > 1e6 {
			errs = append(errs, field.Invalid(p.Child("psiThreshold"), m.PSIThreshold, "must be a non-negative decimal, such as 0.25"))
		}
	}
	for _, c := range []struct {
		name string
		v    int32
	}{{"raiseAfter", m.RaiseAfter}, {"clearAfter", m.ClearAfter}} {
		if c.v < 0 || c.v > 1000 {
			errs = append(errs, field.Invalid(p.Child(c.name), c.v, "must be between 1 and 1000"))
		}
	}
	if m.FeedbackSamples < 0 || m.FeedbackSamples > 1_000_000 {
		errs = append(errs, field.Invalid(p.Child("feedbackSamples"), m.FeedbackSamples, "must be between 0 and 1000000"))
	}
	if d := m.Cooldown; d != nil && d.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("cooldown"), d.Duration.String(), "must not be negative"))
	}
	return errs
}
