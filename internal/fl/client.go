package fl

import (
	"context"
	"errors"
	"io"

	"outpost.dev/outpost/internal/train"
)

// Client is one cluster's side of a job: it turns assignments into
// reports. It keeps the secure round's secrets in memory only; a client
// that restarts mid-round drops out of it.
type Client struct {
	cluster string
	rnd     io.Reader
}

// NewClient makes cluster's side of a job; rnd supplies secure
// aggregation's keys and masks and the stochastic rounding of Int8
// (crypto/rand.Reader in use).
func NewClient(cluster string, rnd io.Reader) *Client {
	return &Client{cluster: cluster, rnd: rnd}
}

// Handle acts on an assignment with the global model it names (global's
// Ref must match a.Model), training on local data and checking the global
// model on val (nil: not checked). It returns the reports to send.
func (c *Client) Handle(ctx context.Context, a Assignment, global GlobalModel, local, val train.Dataset) ([]Report, error) {
	return nil, errors.New("fl: not implemented")
}
