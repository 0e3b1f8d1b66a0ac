// Package registry serves the OCI distribution API (distribution-spec v1.1) over an OCI image layout on disk,
// with repository metadata (tags, manifests, blob links, referrers, upload sessions) in SQLite.
//
// Blob and manifest bytes live once in Root/blobs/<alg>/<hex>, whatever repository links them. Uploads are
// written under Root/uploads and renamed into blobs/ only after the digest is verified and the file is
// synced, so a crash never leaves a partial blob visible; sessions nobody writes to expire. Root/index.json lists every tagged manifest with
// the annotation org.opencontainers.image.ref.name set to "<repo>:<tag>".
package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/clock"
)

// DefaultMaxManifestBytes is the manifest size limit used when Options.MaxManifestBytes is zero.
const DefaultMaxManifestBytes = 4 << 20

// copyBufferSize is the buffer used to stream upload bodies to disk.
const copyBufferSize = 1 << 20

// Options configure a Registry.
type Options struct {
	// Root is the OCI image layout directory; it is created if missing.
	Root string
	// DB holds the registry's metadata; the registry creates its tables (prefix reg_) if missing.
	DB *sql.DB
	// Authorize decides whether r may proceed; write is false for GET and HEAD. It returns an error
	// wrapping auth.ErrUnauthenticated (401) or auth.ErrForbidden (403). Nil allows everything.
	Authorize func(r *http.Request, write bool) error
	// CheckTag is called before a tag is created or moved. A non-nil error refuses the manifest PUT
	// with 409 and the error text in the OCI error JSON; nothing is stored.
	CheckTag func(ctx context.Context, c TagChange) error
	// OnChange is called after a manifest put or delete, or a tag change, has committed.
	OnChange func(ctx context.Context, ev Event)
	// MaxManifestBytes limits manifest bodies; zero means DefaultMaxManifestBytes.
	MaxManifestBytes int64
	// Logger receives errors; nil means slog.Default().
	Logger *slog.Logger
	// Clock stamps repositories, blobs, manifests, tags and upload sessions, and ages upload
	// sessions; nil means the system clock.
	Clock clock.Clock
	// UploadMaxAge is how long an upload session may stay idle (no bytes written) before it
	// expires and its bytes are removed; zero means DefaultUploadMaxAge.
	UploadMaxAge time.Duration
}

// TagChange is a tag about to be created or moved, as Options.CheckTag sees it.
type TagChange struct {
	// Repo and Tag name the tag.
	Repo, Tag string
	// Old is the manifest the tag names now; zero when it names none.
	Old ocispec.Descriptor
	// Deleted is the manifest the tag named when it was last deleted (its tombstone); empty
	// when it never was.
	Deleted digest.Digest
	// New is the manifest the tag is to name, with its media type, artifact type and annotations.
	New ocispec.Descriptor
	// Manifest holds New's bytes.
	Manifest []byte
}

// Tombstone is what a deleted tag named. The registry keeps one per deleted tag, replaced when
// the tag is deleted again.
type Tombstone struct {
	// Digest is the manifest the tag named.
	Digest digest.Digest
	// Deleted is when the tag was deleted, on the registry's clock.
	Deleted time.Time
}

// Event describes a committed change to a repository.
type Event struct {
	// Repo is the repository that changed.
	Repo string
	// Tag is the tag that was set or removed; empty for a change by digest only.
	Tag string
	// Digest is the manifest concerned.
	Digest digest.Digest
	// Deleted is true when the tag (if Tag is set) or the manifest was removed.
	Deleted bool
	// Subject is the manifest's subject digest, if it has one.
	Subject digest.Digest
	// ArtifactType is the manifest's artifact type (artifactType, else config media type).
	ArtifactType string
}

// Registry is an OCI distribution registry. It is safe for concurrent use.
type Registry struct {
	root        string
	db          *sql.DB
	authorize   func(r *http.Request, write bool) error
	checkTag    func(ctx context.Context, c TagChange) error
	onChange    func(ctx context.Context, ev Event)
	maxManifest int64
	log         *slog.Logger
	clock       clock.Clock
	// uploadMaxAge is how long an upload session may stay idle.
	uploadMaxAge time.Duration

	// mu serialises metadata writes and the file operations that must agree with them
	// (committing and removing blobs, rewriting index.json).
	mu sync.Mutex

	upMu    sync.Mutex
	uploads map[string]*upload

	bufPool sync.Pool
}

// New opens (creating if needed) the layout at opts.Root and the metadata tables in opts.DB, and
// removes what upload sessions left: sessions idle for Options.UploadMaxAge, with their bytes,
// and files no session owns. Until ctx ends it goes on expiring idle sessions, every quarter of
// UploadMaxAge (at most every hour) on Options.Clock.
func New(ctx context.Context, opts Options) (*Registry, error) {
	if opts.Root == "" {
		return nil, errors.New("registry: Root is required")
	}
	if opts.DB == nil {
		return nil, errors.New("registry: DB is required")
	}
	reg := &Registry{
		root:         opts.Root,
		db:           opts.DB,
		authorize:    opts.Authorize,
		checkTag:     opts.CheckTag,
		onChange:     opts.OnChange,
		maxManifest:  opts.MaxManifestBytes,
		log:          opts.Logger,
		clock:        clock.OrReal(opts.Clock),
		uploadMaxAge: opts.UploadMaxAge,
		uploads:      make(map[string]*upload),
	}
	if reg.maxManifest <= 0 {
		reg.maxManifest = DefaultMaxManifestBytes
	}
	if reg.uploadMaxAge <= 0 {
		reg.uploadMaxAge = DefaultUploadMaxAge
	}
	if reg.log == nil {
		reg.log = slog.Default()
	}
	reg.bufPool.New = func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}
	if err := reg.migrate(ctx); err != nil {
		return nil, err
	}
	if err := reg.initLayout(ctx); err != nil {
		return nil, err
	}
	go reg.expireUploadsLoop(ctx)
	return reg, nil
}

// route is a parsed /v2/ request path.
type route struct {
	kind string // "base", "catalog", "blob", "blocksums", "uploads", "upload", "manifest", "tags", "referrers"
	repo string
	arg  string // digest, reference or upload id
}

func parseRoute(p string) (route, bool) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		if p == "/v2" {
			return route{kind: "base"}, true
		}
		return route{}, false
	}
	if rest == "" {
		return route{kind: "base"}, true
	}
	if rest == "_catalog" {
		return route{kind: "catalog"}, true
	}
	rest = strings.TrimSuffix(rest, "/")
	parts := strings.Split(rest, "/")
	n := len(parts)
	join := func(k int) string { return strings.Join(parts[:k], "/") }
	switch {
	case n >= 4 && parts[n-3] == "_outpost" && parts[n-2] == "blocksums":
		// A path component of a repository name cannot start with "_".
		return route{kind: "blocksums", repo: join(n - 3), arg: parts[n-1]}, true
	case n >= 3 && parts[n-2] == "blobs" && parts[n-1] == "uploads":
		return route{kind: "uploads", repo: join(n - 2)}, true
	case n >= 4 && parts[n-3] == "blobs" && parts[n-2] == "uploads":
		return route{kind: "upload", repo: join(n - 3), arg: parts[n-1]}, true
	case n >= 3 && parts[n-2] == "blobs":
		return route{kind: "blob", repo: join(n - 2), arg: parts[n-1]}, true
	case n >= 3 && parts[n-2] == "manifests":
		return route{kind: "manifest", repo: join(n - 2), arg: parts[n-1]}, true
	case n >= 3 && parts[n-2] == "tags" && parts[n-1] == "list":
		return route{kind: "tags", repo: join(n - 2)}, true
	case n >= 3 && parts[n-2] == "referrers":
		return route{kind: "referrers", repo: join(n - 2), arg: parts[n-1]}, true
	}
	return route{}, false
}

// ServeHTTP serves /v2/ and everything below it.
func (reg *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		reg.writeError(w, r, newError(http.StatusNotFound, CodeNameUnknown, "unknown endpoint %s", r.URL.Path))
		return
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	if reg.authorize != nil {
		if err := reg.authorize(r, write); err != nil {
			switch {
			case errors.Is(err, auth.ErrForbidden):
				// The refusal says what the credential may do instead.
				reg.writeError(w, r, newError(http.StatusForbidden, CodeDenied, "access denied: %s", err))
			case errors.Is(err, auth.ErrUnauthenticated):
				reg.writeError(w, r, newError(http.StatusUnauthorized, CodeUnauthorized, "authentication required"))
			default:
				// The credential could not be checked (its store was busy, say): it may
				// well be valid, so the client is asked to come back, not to log in.
				reg.log.WarnContext(r.Context(), "authorize failed", "err", err)
				w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterUnavailable/time.Second)))
				reg.writeError(w, r, newError(http.StatusServiceUnavailable, CodeUnavailable, "cannot check credentials now; retry later"))
			}
			return
		}
	}
	if rt.kind != "base" && rt.kind != "catalog" && !validRepo(rt.repo) {
		reg.writeError(w, r, newError(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q", rt.repo))
		return
	}
	var err error
	switch rt.kind {
	case "base":
		err = reg.serveBase(w, r)
	case "catalog":
		err = reg.serveCatalog(w, r)
	case "blob":
		err = reg.serveBlob(w, r, rt.repo, rt.arg)
	case "blocksums":
		err = reg.serveBlockSums(w, r, rt.repo, rt.arg)
	case "uploads":
		err = reg.serveUploadStart(w, r, rt.repo)
	case "upload":
		err = reg.serveUpload(w, r, rt.repo, rt.arg)
	case "manifest":
		err = reg.serveManifest(w, r, rt.repo, rt.arg)
	case "tags":
		err = reg.serveTags(w, r, rt.repo)
	case "referrers":
		err = reg.serveReferrers(w, r, rt.repo, rt.arg)
	}
	if err != nil {
		reg.writeError(w, r, err)
	}
}

func (reg *Registry) serveBase(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod(r)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write([]byte("{}"))
	}
	return nil
}

func errMethod(r *http.Request) error {
	return newError(http.StatusMethodNotAllowed, CodeUnsupported, "method %s not supported here", r.Method)
}

func (reg *Registry) emit(ctx context.Context, evs ...Event) {
	if reg.onChange == nil {
		return
	}
	for _, ev := range evs {
		reg.onChange(context.WithoutCancel(ctx), ev)
	}
}

// wrapDB marks an unexpected storage error for logging, keeping it out of client responses.
func wrapDB(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }
