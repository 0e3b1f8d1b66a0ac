// Package fl is federated learning's core: the round protocol as a pure
// state machine at the hub (Coordinator), the clusters' side of it
// (Client), and the arithmetic they share (aggregation, update encodings,
// adaptive plans). Nothing here does I/O or reads a clock: the hub's
// adapter carries Assignments to clusters as desired state and Reports
// back from their outboxes, passes the time to Handle and Tick, and
// persists Snapshot after every step that produced output.
//
// # Messages
//
// Hub to cluster: one Assignment per cluster and job, versioned like every
// desired state (Version grows with each change; a cluster acts on the
// newest and ignores older ones). It names the global model to start
// from (ModelRef: round and digest of its weights, published in
// Output.Published before any assignment names it), the phase, the local
// work (steps or epochs, batch, learning rate, FedProx μ), the encoding,
// DP clip and noise, the phase's deadline, and the secure round's data.
//
// Cluster to hub: Reports, each answering one assignment version: facts
// (bandwidth, online window, samples/s, samples), a plain Update (the
// weights' change, float32 or int8), or a secure round's keys, shares,
// masked vector or revealed shares (internal/secagg's types).
//
// # Rounds
//
// A synchronous round (FedAvg, FedProx) selects clusters among those
// online (Fraction of them, at least MinClients; clusters that missed the
// last key exchange sit one attempt out). Without secure aggregation its
// members are assigned Train, and the round aggregates when every update
// is in, or at the deadline with at least MinClients of them; with fewer
// it is abandoned and retried. A member that reports itself offline is
// not waited for: when every member that has not answered a phase is
// offline, the phase closes at once as at its deadline. Updates are averaged by sample count
// (FedAvg), or FedNova-normalised when the coordinator assigned
// different step counts (NovaCoefficients).
//
// With secure aggregation (SecAgg+) the phases are Advertise (keys),
// Share (encrypted shares for the K neighbours on the round's graph),
// Mask (train, then send Weight·Δ, fixed-point encoded and masked) and
// Unmask (reveal shares for the senders and dropouts). A cluster missing
// from the key exchange abandons the attempt before anything is masked,
// and the next attempt goes without it. After masking, up to K − T
// dropouts still give the exact sum; with more, Sum fails and the round is
// abandoned with nothing revealed but masked vectors. MaxRetries
// abandoned rounds in a row fail the job. Reports for another round or
// attempt, an older assignment, the wrong phase, replays, NaN or infinite
// values, the wrong shape, updates over the clip norm, shares for a
// non-neighbour and reports from non-members are refused (ErrRefused) and
// change nothing.
//
// FedBuff is asynchronous: every idle online cluster gets work on the
// current model at once; updates enter a buffer, discounted by
// 1/sqrt(1+staleness) (staleness: models published since the update's
// base; beyond MaxStaleness they are refused, and work whose base falls
// that far behind is restarted from the current model at once), and every
// BufferSize of them make the next model. With secure aggregation,
// BufferSize idle clusters form a cohort that runs the secure phases, and
// each cohort's sum is one flush. Every aggregate is scaled by ServerLR
// before it is applied; FedBuff with many clusters training at once wants
// it below 1 (bench/fl: 0.5 for 10 clusters and a buffer of 3).
//
// # Differential privacy
//
// Each client's update is clipped to Clip (L2, over all tensors). The
// aggregate of n updates is (Σ Δ_i + N(0, σ²·Clip²)) / n: the coordinator
// adds the noise (central, to the secure sum or to the plain updates), or
// each client adds N(0, σ²·Clip²/MinClients) before masking so that any
// MinClients of them carry the full noise (Distributed). After every
// round the RDP of the sampled Gaussian mechanism (rate: members over
// known clusters) is composed (internal/privacy) and ε at the job's δ is
// reported; a round that would pass EpsilonBudget is not started and the
// job ends.
//
// # Adaptation
//
// From each cluster's facts, Choose picks the encoding (int8 when float32
// would take over a quarter of the deadline to upload) and the local
// steps: in a synchronous round, which lasts until its slowest upload is
// in, the others train on in the meantime; in FedBuff a thin link trains
// as long as its upload takes. The plan and a sentence saying why are in
// Status.Plans and the assignment's Reason.
package fl
