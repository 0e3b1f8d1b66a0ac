package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// pageParams reads ?n= and ?last=; n < 0 means no limit.
func pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", newError(http.StatusBadRequest, CodeUnsupported, "invalid n %q", s)
		}
		n = v
	}
	return n, q.Get("last"), nil
}

// page runs a "SELECT x ... WHERE ... AND x > ? ORDER BY x" listing with pagination and sets the Link header.
func (reg *Registry) page(ctx context.Context, w http.ResponseWriter, path string, n int, last string,
	query string, args ...any) ([]string, error) {
	out := []string{}
	if n == 0 {
		return out, nil
	}
	limit := -1
	if n > 0 {
		limit = n + 1
	}
	args = append(args, last, limit)
	rows, err := reg.db.QueryContext(ctx, query+` LIMIT ?`, args...)
	if err != nil {
		return nil, wrapDB("list", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, wrapDB("scan list", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapDB("list", err)
	}
	if n > 0 && len(out) > n {
		out = out[:n]
		v := url.Values{}
		v.Set("n", strconv.Itoa(n))
		v.Set("last", out[len(out)-1])
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, v.Encode()))
	}
	return out, nil
}

func (reg *Registry) serveTags(w http.ResponseWriter, r *http.Request, repo string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod(r)
	}
	ctx := r.Context()
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	ok, err := repoExists(ctx, reg.db, repo)
	if err != nil {
		return err
	}
	if !ok {
		return newError(http.StatusNotFound, CodeNameUnknown, "repository %s unknown", repo)
	}
	tags, err := reg.page(ctx, w, "/v2/"+repo+"/tags/list", n, last,
		`SELECT tag FROM reg_tags WHERE repo = ? AND tag > ? ORDER BY tag`, repo)
	if err != nil {
		return err
	}
	writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{repo, tags})
	return nil
}

func (reg *Registry) serveCatalog(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod(r)
	}
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	repos, err := reg.page(r.Context(), w, "/v2/_catalog", n, last,
		`SELECT name FROM reg_repositories WHERE name > ? ORDER BY name`)
	if err != nil {
		return err
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
	return nil
}

func (reg *Registry) serveReferrers(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod(r)
	}
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	at := r.URL.Query().Get("artifactType")
	descs, err := reg.Referrers(r.Context(), repo, d, at)
	if err != nil {
		return err
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, r, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: descs,
	})
	return nil
}

// Repositories lists repositories whose names start with prefix, in lexical order.
func (reg *Registry) Repositories(ctx context.Context, prefix string) ([]string, error) {
	rows, err := reg.db.QueryContext(ctx, `SELECT name FROM reg_repositories WHERE substr(name, 1, length(?)) = ? ORDER BY name`, prefix, prefix)
	if err != nil {
		return nil, wrapDB("list repositories", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, wrapDB("scan repository", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Tags lists the tags of repo in lexical order; errors.Is(err, ErrNotFound) if repo does not exist.
func (reg *Registry) Tags(ctx context.Context, repo string) ([]string, error) {
	ok, err := repoExists(ctx, reg.db, repo)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("repository %s: %w", repo, ErrNotFound)
	}
	rows, err := reg.db.QueryContext(ctx, `SELECT tag FROM reg_tags WHERE repo = ? ORDER BY tag`, repo)
	if err != nil {
		return nil, wrapDB("list tags", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, wrapDB("scan tag", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Resolve returns the descriptor of the manifest that reference (a tag or a digest) names in repo;
// errors.Is(err, ErrNotFound) if there is none.
func (reg *Registry) Resolve(ctx context.Context, repo, reference string) (ocispec.Descriptor, error) {
	return reg.resolve(ctx, reg.db, repo, reference)
}

// Tombstone returns what tag of repo named when it was last deleted; errors.Is(err, ErrNotFound)
// if it never was. A tag pushed again after its deletion keeps its tombstone.
func (reg *Registry) Tombstone(ctx context.Context, repo, tag string) (Tombstone, error) {
	return tombstone(ctx, reg.db, repo, tag)
}

// Manifest returns the bytes and descriptor of manifest d in repo; errors.Is(err, ErrNotFound) if absent.
func (reg *Registry) Manifest(ctx context.Context, repo string, d digest.Digest) ([]byte, ocispec.Descriptor, error) {
	return reg.readManifest(ctx, repo, d.String())
}

// Referrers lists the manifests in repo whose subject is subject, optionally only those of artifactType,
// ordered by digest. An unknown subject or repository gives an empty list.
func (reg *Registry) Referrers(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	q := `SELECT ` + manifestCols + ` FROM reg_referrers x
		JOIN reg_manifests m ON m.repo = x.repo AND m.digest = x.digest
		WHERE x.repo = ? AND x.subject = ?`
	args := []any{repo, subject.String()}
	if artifactType != "" {
		q += ` AND m.artifact_type = ?`
		args = append(args, artifactType)
	}
	rows, err := reg.db.QueryContext(ctx, q+` ORDER BY m.digest`, args...)
	if err != nil {
		return nil, wrapDB("list referrers", err)
	}
	defer rows.Close()
	out := []ocispec.Descriptor{}
	for rows.Next() {
		d, err := scanDescriptor(rows)
		if err != nil {
			return nil, wrapDB("scan referrer", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// OpenBlob opens blob d of repo for reading and returns its size; errors.Is(err, ErrNotFound) if repo does
// not link it. The caller closes the file.
func (reg *Registry) OpenBlob(ctx context.Context, repo string, d digest.Digest) (*os.File, int64, error) {
	return reg.openBlob(ctx, repo, d)
}

// PutBlob stores b as a blob of repo, as a monolithic upload would, and
// returns its sha256 digest. Storing a blob the repository has is a no-op.
func (reg *Registry) PutBlob(ctx context.Context, repo string, b []byte) (digest.Digest, error) {
	if !validRepo(repo) {
		return "", fmt.Errorf("registry: invalid repository name %q", repo)
	}
	d := digest.SHA256.FromBytes(b)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if err := reg.storeBytesLocked(d, b); err != nil {
		return "", err
	}
	return d, reg.withTx(ctx, func(q querier) error {
		return reg.linkBlob(ctx, q, repo, d.String(), int64(len(b)))
	})
}

// PutManifest stores body, a manifest of media type mediaType, in repo by
// its digest, checked as a PUT by digest is (every blob and manifest it
// names must be in the repository), and reports the change to
// Options.OnChange. It returns the manifest's descriptor.
func (reg *Registry) PutManifest(ctx context.Context, repo, mediaType string, body []byte) (ocispec.Descriptor, error) {
	if !validRepo(repo) {
		return ocispec.Descriptor{}, fmt.Errorf("registry: invalid repository name %q", repo)
	}
	if int64(len(body)) > reg.maxManifest {
		return ocispec.Descriptor{}, newError(http.StatusRequestEntityTooLarge, CodeSizeInvalid, "manifest exceeds %d bytes", reg.maxManifest)
	}
	info, err := parseManifest(mediaType, body)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := digest.SHA256.FromBytes(body)
	evs, err := reg.commitManifest(ctx, repo, d, body, info, nil)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	reg.emit(ctx, evs...)
	return ocispec.Descriptor{MediaType: info.MediaType, ArtifactType: info.ArtifactType, Digest: d, Size: int64(len(body)), Annotations: info.Annotations}, nil
}

// TagManifest points tag of repo at manifest d, which repo holds, as a PUT of the manifest
// by that tag would: Options.CheckTag is asked first, and the change is reported to
// Options.OnChange.
func (reg *Registry) TagManifest(ctx context.Context, repo, tag string, d digest.Digest) error {
	if !validTag(tag) {
		return newError(http.StatusBadRequest, CodeManifestInvalid, "invalid tag %q", tag)
	}
	body, desc, err := reg.readManifest(ctx, repo, d.String())
	if err != nil {
		return err
	}
	info, err := parseManifest(desc.MediaType, body)
	if err != nil {
		return err
	}
	evs, err := reg.commitManifest(ctx, repo, d, body, info, []string{tag})
	if err != nil {
		return err
	}
	reg.emit(ctx, evs...)
	return nil
}
