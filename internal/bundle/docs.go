package bundle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
)

// Blob is one blob of a bundle: its sha256 digest and size.
type Blob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// ClusterState is a cluster's part of a bundle: the desired state the hub
// holds for it at the bundle's making, and the newest status bundle of the
// cluster the hub had imported then (its records may be freed).
type ClusterState struct {
	// Cluster is the cluster's name.
	Cluster string `json:"cluster"`
	// Desired is the cluster's desired state, stamped with the hub's revision.
	Desired v1alpha1.DesiredState `json:"desired"`
	// StatusAck is the sequence number of the newest status bundle of the
	// cluster the hub imported; 0 for none.
	StatusAck int64 `json:"statusAck,omitempty"`
}

// Contents is the hub-signed table of an outbound bundle.
type Contents struct {
	// ID names the bundle (random, unique per bundle).
	ID string `json:"id"`
	// Created is when the hub signed it.
	Created time.Time `json:"created"`
	// Clusters holds the desired state of each cluster the bundle is for.
	Clusters []ClusterState `json:"clusters"`
	// Blobs lists every blob of the layout but the bundle's own manifest and
	// this document's envelope.
	Blobs []Blob `json:"blobs"`
	// Packs are the files the bundle carries as the chunks the clusters
	// lack rather than whole: each is rebuilt from them and the chunks the
	// cluster holds in other files, and checked against its digest.
	Packs []Pack `json:"packs,omitempty"`
	// Deltas are the files carried as weight deltas against a file the
	// clusters hold (internal/weightdelta): each is rebuilt from it and
	// checked against its digest.
	Deltas []Delta `json:"deltas,omitempty"`
}

// Delta is a file carried as a weight delta.
type Delta struct {
	// File is the digest and size of the file it rebuilds; Base those of
	// the file it applies to.
	File Blob `json:"file"`
	Base Blob `json:"base"`
	// Blob is the delta's blob in the layout.
	Blob digest.Digest `json:"blob"`
}

// Delta returns the weight delta that rebuilds file d, if the bundle has one.
func (c *Contents) Delta(d digest.Digest) (Delta, bool) {
	i := slices.IndexFunc(c.Deltas, func(x Delta) bool { return x.File.Digest == d })
	if i < 0 {
		return Delta{}, false
	}
	return c.Deltas[i], true
}

// Pack is a file carried as chunks: its blob holds the chunks the
// clusters lack, one after the other, in the order listed.
type Pack struct {
	// File is the digest and size of the file it rebuilds.
	File Blob `json:"file"`
	// Blob is the pack's blob in the layout.
	Blob digest.Digest `json:"blob"`
	// Chunks are the chunks in the blob, in order.
	Chunks []Blob `json:"chunks"`
}

// Pack returns the pack that rebuilds file d, if the bundle has one.
func (c *Contents) Pack(d digest.Digest) (Pack, bool) {
	i := slices.IndexFunc(c.Packs, func(p Pack) bool { return p.File.Digest == d })
	if i < 0 {
		return Pack{}, false
	}
	return c.Packs[i], true
}

// MissingChunks returns the chunks of a file (each with its digest and
// length, in file order) that held lacks, each once, and their bytes.
func MissingChunks(chunks []Blob, held map[digest.Digest]bool) ([]Blob, int64) {
	seen := map[digest.Digest]bool{}
	var out []Blob
	var n int64
	for _, c := range chunks {
		if held[c.Digest] || seen[c.Digest] {
			continue
		}
		seen[c.Digest] = true
		out = append(out, c)
		n += c.Size
	}
	return out, n
}

// Parts is the hub-signed list of the tar parts a bundle travels in: the
// parts, in order, make one tar stream of the layout.
type Parts struct {
	// Bundle is the bundle's Contents.ID.
	Bundle string `json:"bundle"`
	// Size is the size of the whole tar stream.
	Size int64 `json:"size"`
	// Parts are the pieces of the stream, in order.
	Parts []Part `json:"parts"`
}

// Part is one piece of a bundle's tar stream.
type Part struct {
	// Name is the part's file name.
	Name string `json:"name"`
	// Offset is where the part starts in the stream.
	Offset int64 `json:"offset"`
	// Size is the part's size.
	Size int64 `json:"size"`
	// Digest is the part's sha256.
	Digest digest.Digest `json:"digest"`
}

// Status is a status bundle: what a cluster sends back, signed with its key.
type Status struct {
	// Cluster is the cluster's name.
	Cluster string `json:"cluster"`
	// Seq numbers the cluster's status bundles, from 1.
	Seq int64 `json:"seq"`
	// Created is when the cluster exported it.
	Created time.Time `json:"created"`
	// Report is the cluster's report, as the agent sends it online.
	Report *v1alpha1.AgentReport `json:"report,omitempty"`
	// Inventory lists the manifest digests of the versions the cluster holds.
	Inventory []digest.Digest `json:"inventory,omitempty"`
	// Records are the outbox records the hub has not acknowledged.
	Records []v1alpha1.OutboxRecord `json:"records,omitempty"`
}

// strictDecode decodes b into v, refusing unknown fields and trailing data.
func strictDecode(b []byte, v any, what string) error {
	if len(b) > MaxDocBytes {
		return fmt.Errorf("%w: %s of %d bytes, above %d", ErrMalformed, what, len(b), MaxDocBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: %s: data after the document", ErrMalformed, what)
	}
	return nil
}

func checkBlob(b Blob, what string) error {
	if err := b.Digest.Validate(); err != nil || b.Digest.Algorithm() != digest.SHA256 {
		return fmt.Errorf("%w: %s: digest %q is not sha256", ErrMalformed, what, b.Digest)
	}
	if b.Size < 0 {
		return fmt.Errorf("%w: %s: negative size", ErrMalformed, what)
	}
	return nil
}

// ParseContents decodes and checks a bundle's Contents.
func ParseContents(b []byte) (*Contents, error) {
	var c Contents
	if err := strictDecode(b, &c, "contents"); err != nil {
		return nil, err
	}
	return &c, c.Validate()
}

// Validate checks c: an id, at least one cluster, each once and with its
// own desired state, and blobs with sha256 digests, each once.
func (c *Contents) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("%w: contents: no id", ErrMalformed)
	}
	if len(c.Clusters) == 0 {
		return fmt.Errorf("%w: contents: no cluster", ErrMalformed)
	}
	seen := map[string]bool{}
	for _, cs := range c.Clusters {
		if cs.Cluster == "" || seen[cs.Cluster] {
			return fmt.Errorf("%w: contents: cluster %q empty or listed twice", ErrMalformed, cs.Cluster)
		}
		seen[cs.Cluster] = true
		if cs.Desired.Cluster != cs.Cluster {
			return fmt.Errorf("%w: contents: cluster %q carries the desired state of %q", ErrMalformed, cs.Cluster, cs.Desired.Cluster)
		}
		if cs.StatusAck < 0 {
			return fmt.Errorf("%w: contents: cluster %q: negative statusAck", ErrMalformed, cs.Cluster)
		}
	}
	if len(c.Blobs) > MaxBlobs {
		return fmt.Errorf("%w: contents: %d blobs, above %d", ErrMalformed, len(c.Blobs), MaxBlobs)
	}
	blobs := map[digest.Digest]int64{}
	for i, b := range c.Blobs {
		if err := checkBlob(b, fmt.Sprintf("contents: blob %d", i)); err != nil {
			return err
		}
		if _, dup := blobs[b.Digest]; dup {
			return fmt.Errorf("%w: contents: blob %s listed twice", ErrMalformed, b.Digest)
		}
		blobs[b.Digest] = b.Size
	}
	files := map[digest.Digest]bool{}
	for i, p := range c.Packs {
		if err := checkBlob(p.File, fmt.Sprintf("contents: pack %d", i)); err != nil {
			return err
		}
		if files[p.File.Digest] {
			return fmt.Errorf("%w: contents: two packs rebuild %s", ErrMalformed, p.File.Digest)
		}
		files[p.File.Digest] = true
		size, ok := blobs[p.Blob]
		if !ok {
			return fmt.Errorf("%w: contents: pack of %s: blob %s not listed", ErrMalformed, p.File.Digest, p.Blob)
		}
		var sum int64
		for j, ch := range p.Chunks {
			if err := checkBlob(ch, fmt.Sprintf("contents: pack %d chunk %d", i, j)); err != nil {
				return err
			}
			sum += ch.Size
			if sum < 0 {
				return fmt.Errorf("%w: contents: pack %d overflows", ErrMalformed, i)
			}
		}
		if sum != size {
			return fmt.Errorf("%w: contents: pack of %s: chunks of %d bytes in a blob of %d", ErrMalformed, p.File.Digest, sum, size)
		}
	}
	for i, d := range c.Deltas {
		if err := checkBlob(d.File, fmt.Sprintf("contents: delta %d", i)); err != nil {
			return err
		}
		if err := checkBlob(d.Base, fmt.Sprintf("contents: delta %d base", i)); err != nil {
			return err
		}
		if files[d.File.Digest] {
			return fmt.Errorf("%w: contents: two packs or deltas rebuild %s", ErrMalformed, d.File.Digest)
		}
		files[d.File.Digest] = true
		if _, ok := blobs[d.Blob]; !ok {
			return fmt.Errorf("%w: contents: delta of %s: blob %s not listed", ErrMalformed, d.File.Digest, d.Blob)
		}
	}
	return nil
}

// For returns the state c carries for cluster, or an error wrapping
// ErrOtherCluster naming the clusters it is for.
func (c *Contents) For(cluster string) (ClusterState, error) {
	names := make([]string, 0, len(c.Clusters))
	for _, cs := range c.Clusters {
		if cs.Cluster == cluster {
			return cs, nil
		}
		names = append(names, cs.Cluster)
	}
	return ClusterState{}, fmt.Errorf("%w: it is for %v, this cluster is %q", ErrOtherCluster, names, cluster)
}

// ParseParts decodes and checks a list of parts.
func ParseParts(b []byte) (*Parts, error) {
	var p Parts
	if err := strictDecode(b, &p, "parts"); err != nil {
		return nil, err
	}
	return &p, p.Validate()
}

// Validate checks p: parts that follow each other without gap or overlap
// from offset 0 to Size, each with a sha256 digest and a plain file name.
func (p *Parts) Validate() error {
	if p.Bundle == "" {
		return fmt.Errorf("%w: parts: no bundle id", ErrMalformed)
	}
	if len(p.Parts) == 0 || len(p.Parts) > MaxParts {
		return fmt.Errorf("%w: parts: %d parts", ErrMalformed, len(p.Parts))
	}
	var off int64
	names := map[string]bool{}
	for i, pt := range p.Parts {
		if err := checkBlob(Blob{Digest: pt.Digest, Size: pt.Size}, fmt.Sprintf("part %d", i)); err != nil {
			return err
		}
		if !plainName(pt.Name) || names[pt.Name] {
			return fmt.Errorf("%w: part %d: name %q is not a plain file name, or is listed twice", ErrMalformed, i, pt.Name)
		}
		names[pt.Name] = true
		if pt.Offset != off || pt.Size == 0 {
			return fmt.Errorf("%w: part %d starts at %d with %d bytes, want it at %d and not empty", ErrMalformed, i, pt.Offset, pt.Size, off)
		}
		off += pt.Size
		if off < 0 {
			return fmt.Errorf("%w: parts overflow", ErrMalformed)
		}
	}
	if off != p.Size {
		return fmt.Errorf("%w: parts cover %d bytes, the stream has %d", ErrMalformed, off, p.Size)
	}
	return nil
}

// plainName reports whether s is a file name with no directory, of
// characters safe on any file system.
func plainName(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > 200 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// ParseStatus decodes and checks a status bundle's document.
func ParseStatus(b []byte) (*Status, error) {
	var s Status
	// Lenient on fields, as the hub is with reports: a newer agent's
	// extra fields must not cost the hub its records.
	if len(b) > MaxDocBytes {
		return nil, fmt.Errorf("%w: status of %d bytes, above %d", ErrMalformed, len(b), MaxDocBytes)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: status: %v", ErrMalformed, err)
	}
	return &s, s.Validate()
}

// Validate checks s: a cluster, a positive sequence number, a report of
// the same cluster, records with keys, each once.
func (s *Status) Validate() error {
	if s.Cluster == "" {
		return fmt.Errorf("%w: status: no cluster", ErrMalformed)
	}
	if s.Seq <= 0 {
		return fmt.Errorf("%w: status: sequence %d, want 1 or more", ErrMalformed, s.Seq)
	}
	if s.Report != nil && s.Report.Cluster != s.Cluster {
		return fmt.Errorf("%w: status of cluster %q carries the report of %q", ErrMalformed, s.Cluster, s.Report.Cluster)
	}
	keys := map[string]bool{}
	for i, r := range s.Records {
		if r.Key == "" || keys[r.Key] {
			return fmt.Errorf("%w: status: record %d: key %q empty or listed twice", ErrMalformed, i, r.Key)
		}
		keys[r.Key] = true
	}
	for _, d := range s.Inventory {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%w: status: inventory digest %q: %v", ErrMalformed, d, err)
		}
	}
	return nil
}

// Common returns the digests in every one of sets: what every cluster a
// bundle is for holds, the only blobs and chunks it may leave out.
func Common(sets ...map[digest.Digest]bool) map[digest.Digest]bool {
	out := map[digest.Digest]bool{}
	if len(sets) == 0 {
		return out
	}
	for d := range sets[0] {
		in := true
		for _, s := range sets[1:] {
			in = in && s[d]
		}
		if in {
			out[d] = true
		}
	}
	return out
}

// Need is a blob a desired version needs: a manifest, config, file or
// referrer; Chunks are a file's content-defined chunks (from its chunk
// index), nil for other blobs; Deltas are the file's weight deltas.
type Need struct {
	Blob   Blob
	Chunks []Blob
	Deltas []DeltaOption
}

// DeltaOption is a weight delta a file may travel as: Blob rebuilds it
// from Base.
type DeltaOption struct {
	Base, Blob Blob
}

// PackPlan says a file travels as the chunks Missing, in file order.
type PackPlan struct {
	File    Blob
	Missing []Blob
}

// DeltaPlan says a file travels as a weight delta.
type DeltaPlan struct {
	File Blob
	DeltaOption
}

// Plan decides what a bundle carries for clusters that need need and hold
// held (blobs) and heldChunks (the chunks of the files they hold): every
// needed blob not held, each once, as the smallest of: the blob whole; for
// a file whose chunks the clusters partly hold, a pack of the chunks they
// lack; for a file with a weight delta against a file they hold, the
// delta. whole lists the blobs to carry as they are, in the order first
// needed.
func Plan(need []Need, held, heldChunks map[digest.Digest]bool) (whole []Blob, packs []PackPlan, deltas []DeltaPlan) {
	seen := map[digest.Digest]bool{}
	for _, n := range need {
		b := n.Blob
		if seen[b.Digest] || held[b.Digest] {
			continue
		}
		seen[b.Digest] = true
		best, packed := b.Size, false
		var missing []Blob
		if len(n.Chunks) > 0 && len(heldChunks) > 0 {
			var size int64
			if missing, size = MissingChunks(n.Chunks, heldChunks); size < best {
				best, packed = size, true
			}
		}
		var delta *DeltaOption
		for _, d := range n.Deltas {
			if held[d.Base.Digest] && d.Blob.Size < best {
				best, delta = d.Blob.Size, &d
			}
		}
		switch {
		case delta != nil:
			deltas = append(deltas, DeltaPlan{File: b, DeltaOption: *delta})
		case packed:
			packs = append(packs, PackPlan{File: b, Missing: missing})
		default:
			whole = append(whole, b)
		}
	}
	return whole, packs, deltas
}

// Missing returns the names of the parts of p not in have, in order.
func (p *Parts) Missing(have map[string]bool) []string {
	var out []string
	for _, pt := range p.Parts {
		if !have[pt.Name] {
			out = append(out, pt.Name)
		}
	}
	return out
}

// Part returns the part of p named name.
func (p *Parts) Part(name string) (Part, bool) {
	i := slices.IndexFunc(p.Parts, func(pt Part) bool { return pt.Name == name })
	if i < 0 {
		return Part{}, false
	}
	return p.Parts[i], true
}

// Acked returns the keys of the records exported in status bundles up to
// ack: what the edge may free once the hub says it imported them.
// exported maps each status bundle's sequence number to its record keys.
func Acked(exported map[int64][]string, ack int64) (keys []string, seqs []int64) {
	for seq := range exported {
		if seq <= ack {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	for _, s := range seqs {
		keys = append(keys, exported[s]...)
	}
	return keys, seqs
}
