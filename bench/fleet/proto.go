package main

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"oras.land/oras-go/v2/registry/remote/errcode"

	"outpost.dev/outpost/internal/hubclient"
)

// The fleet runs its simulated agents in child processes (re-executions of
// this program with -child), each within its open-files limit. The parent
// sends each child commands on its stdin and reads events from its stdout,
// one JSON object a line.

// command is what the parent tells a child.
type command struct {
	// Op is "start" (start every agent) or "target" (a rollout of Version
	// begins at T0).
	Op      string `json:"op"`
	Version string `json:"version,omitempty"`
	T0      int64  `json:"t0,omitempty"` // unix ns
}

// event is what a child tells the parent.
type event struct {
	// Ev is "ready" (agent I has a long-poll answered and a report
	// acknowledged), "recv" (agent I received Version, D ns after the
	// rollout's T0), "active" (the hub acknowledged agent I's Active report
	// on Version, D ns after T0), "target" (the child took the rollout of
	// Version) or "stats".
	Ev      string `json:"ev"`
	I       int    `json:"i,omitempty"`
	Version string `json:"v,omitempty"`
	D       int64  `json:"d,omitempty"`
	Stats   *stats `json:"stats,omitempty"`
}

// stats are a child's counts since it started.
type stats struct {
	Reports int64 `json:"reports"` // acknowledged
	Polls   int64 `json:"polls"`   // desired-state answers with a document
	Fetches int64 `json:"fetches"` // manifest, config and chunk index fetches begun
	// Errors counts failed requests by the hub's status code ("none" when
	// there was no answer); Last holds the last error of each.
	Errors map[string]int64  `json:"errors,omitempty"`
	Last   map[string]string `json:"last,omitempty"`
}

func (s *stats) add(o *stats) {
	s.Reports += o.Reports
	s.Polls += o.Polls
	s.Fetches += o.Fetches
	for k, v := range o.Errors {
		if s.Errors == nil {
			s.Errors, s.Last = map[string]int64{}, map[string]string{}
		}
		s.Errors[k] += v
		s.Last[k] = o.Last[k]
	}
}

func (s stats) errors() int64 {
	var n int64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// errorsSince formats the errors counted since before by status code, such
// as "503: 12, none: 3", or "none".
func (s stats) errorsSince(before stats) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(s.Errors)) {
		if n := s.Errors[k] - before.Errors[k]; n > 0 {
			parts = append(parts, k+": "+strconv.FormatInt(n, 10))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

var statusInMessage = regexp.MustCompile(`response status code (\d{3})`)

// statusOf is the status code of the hub's answer that err reports, as a
// key of stats.Errors: "503", or "none" when the hub did not answer.
func statusOf(err error) string {
	if code := hubclient.Code(err); code != 0 {
		return strconv.Itoa(code)
	}
	if er, ok := errors.AsType[*errcode.ErrorResponse](err); ok {
		return strconv.Itoa(er.StatusCode)
	}
	if m := statusInMessage.FindStringSubmatch(err.Error()); m != nil {
		return m[1]
	}
	return "none"
}

// lastErrors lists the last error of each status code, a line each.
func (s stats) lastErrors() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.Last)) {
		msg := s.Last[k]
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		fmt.Fprintf(&b, "\n    last %s: %s", k, msg)
	}
	return b.String()
}
