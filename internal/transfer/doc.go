// Package transfer fetches one file of a model, chunk by chunk: chunks the
// agent already holds are copied from local files, the others are fetched
// with HTTP Range requests in parallel, under a shared bandwidth limit that
// serves higher priorities first.
//
// A Plan (NewPlan, pure) says where each chunk comes from; a Fetcher
// carries it out. Every chunk is verified by sha256 as it completes and the
// whole file once at the end. A cut connection resumes from the byte it
// reached, so a cut costs no bytes twice; a corrupt chunk is counted and
// fetched again, with exponential backoff and jitter between attempts.
// Verified chunks are recorded in a sidecar state file, so a restarted
// process resumes after re-hashing them. The file is assembled in
// dst+".part" and renamed to dst only once whole, verified and fsynced, so
// dst never holds anything else.
package transfer
