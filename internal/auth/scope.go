package auth

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"outpost.dev/outpost/api/v1alpha1"
)

// ClusterMay returns nil when a credential of cluster may send a request with method to
// urlPath, and an error wrapping ErrForbidden otherwise. A cluster may:
//
//   - read the registry: GET or HEAD of /v2/ and anything under it, except the
//     repositories of the models other clusters produced, /v2/edge/{other}/...;
//   - write its own edge repositories, edge/{cluster}/{model}: push blobs (POST, PATCH and
//     PUT of .../blobs/uploads/), manifests and tags (PUT .../manifests/{ref}) under
//     /v2/edge/{cluster}/, but not delete them;
//   - GET its own Cluster, /apis/ml.outpost.dev/v1alpha1/clusters/{cluster};
//   - GET its own desired state, .../clusters/{cluster}/desiredstate;
//   - POST its own report, .../clusters/{cluster}/report;
//   - POST its own outbox records, .../clusters/{cluster}/outbox.
//
// Nothing else: not another cluster's resource, desired state, report or models, no list,
// no other write. See ClusterMayRequest for the query of a cross-repository mount.
func ClusterMay(cluster, method, urlPath string) error {
	read := method == http.MethodGet || method == http.MethodHead
	if clean := path.Clean(urlPath); clean != strings.TrimSuffix(urlPath, "/") && clean != urlPath {
		return fmt.Errorf("cluster %q may not %s %s: the path is not in canonical form: %w", cluster, method, urlPath, ErrForbidden)
	}
	if urlPath == "/v2" || urlPath == "/v2/" || strings.HasPrefix(urlPath, "/v2/") {
		return clusterMayRegistry(cluster, method, urlPath)
	}
	if rest, ok := strings.CutPrefix(urlPath, v1alpha1.APIPath+"/clusters/"); ok && !strings.HasSuffix(rest, "/") {
		name, sub, _ := strings.Cut(rest, "/")
		switch {
		case sub == "desiredstate" && read:
			if name != cluster {
				return fmt.Errorf("cluster %q may not read the desired state of cluster %q: %w", cluster, name, ErrForbidden)
			}
			return nil
		case sub == "report" && method == http.MethodPost:
			if name != cluster {
				return fmt.Errorf("cluster %q may not report for cluster %q: %w", cluster, name, ErrForbidden)
			}
			return nil
		case sub == "outbox" && method == http.MethodPost:
			if name != cluster {
				return fmt.Errorf("cluster %q may not send outbox records for cluster %q: %w", cluster, name, ErrForbidden)
			}
			return nil
		case sub == "" && read && name != "":
			if name != cluster {
				return fmt.Errorf("cluster %q may not read cluster %q: %w", cluster, name, ErrForbidden)
			}
			return nil
		}
	}
	return fmt.Errorf("cluster %q may not %s %s: a cluster credential may only read the registry, "+
		"its own Cluster and desired state, and report its own status and outbox records: %w", cluster, method, urlPath, ErrForbidden)
}

// ClusterMayRequest is ClusterMay for a whole request's method and URL: it also refuses a
// cross-repository mount (POST .../blobs/uploads/?mount=DIGEST&from=REPO) from a repository
// the cluster may not read, or with no from at all (which mounts the blob from wherever the
// registry has it), so that a mount never hands a cluster a blob it could not read.
func ClusterMayRequest(cluster, method string, u *url.URL) error {
	if err := ClusterMay(cluster, method, u.Path); err != nil {
		return err
	}
	if method != http.MethodPost || !strings.HasPrefix(u.Path, "/v2/") {
		return nil
	}
	q := u.Query()
	if !q.Has("mount") {
		return nil
	}
	from := q.Get("from")
	if from == "" {
		return fmt.Errorf("cluster %q may not mount a blob without from=REPOSITORY (one it may read): %w", cluster, ErrForbidden)
	}
	if strings.HasPrefix(from, "/") || path.Clean(from) != from {
		return fmt.Errorf("cluster %q may not mount from %q: not a repository name: %w", cluster, from, ErrForbidden)
	}
	if err := ClusterMay(cluster, http.MethodGet, "/v2/"+from+"/tags/list"); err != nil {
		return fmt.Errorf("cluster %q may not mount a blob from %s, which it may not read: %w", cluster, from, ErrForbidden)
	}
	return nil
}

// clusterMayRegistry is ClusterMay for the registry's paths, /v2/ and under.
func clusterMayRegistry(cluster, method, urlPath string) error {
	own := "/v2/" + v1alpha1.EdgeRepositories(cluster)
	if rest, ok := strings.CutPrefix(urlPath, "/v2/"+v1alpha1.EdgeRepositoryPrefix); ok {
		if other, _, _ := strings.Cut(rest, "/"); other != cluster {
			return fmt.Errorf("cluster %q may not %s %s: the repositories under /v2/%s%s/ hold cluster %q's models; its own are under %s: %w",
				cluster, method, urlPath, v1alpha1.EdgeRepositoryPrefix, other, other, own, ErrForbidden)
		}
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return nil
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		if repo, ok := registryRepository(urlPath); ok && strings.HasPrefix("/v2/"+repo, own) {
			return nil
		}
	case http.MethodDelete:
		if strings.HasPrefix(urlPath, own) {
			return fmt.Errorf("cluster %q may not delete from the registry (%s): a version, once pushed, stays: %w", cluster, urlPath, ErrForbidden)
		}
	}
	return fmt.Errorf("cluster %q may not %s %s: a cluster credential writes only its own repositories, under %s (edge/%s/MODEL): %w",
		cluster, method, urlPath, own, cluster, ErrForbidden)
}

// registryRepository returns the repository a path of the OCI distribution API under /v2/
// addresses (as the registry reads it: the part before its last blobs/, manifests/, tags/,
// referrers/ or _outpost/ route), and false for a path that addresses none.
func registryRepository(urlPath string) (string, bool) {
	rest, ok := strings.CutPrefix(urlPath, "/v2/")
	if !ok {
		return "", false
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	n := len(parts)
	join := func(k int) (string, bool) { return strings.Join(parts[:k], "/"), k > 0 }
	switch {
	case n >= 4 && parts[n-3] == "_outpost" && parts[n-2] == "blocksums":
		return join(n - 3)
	case n >= 3 && parts[n-2] == "blobs" && parts[n-1] == "uploads":
		return join(n - 2)
	case n >= 4 && parts[n-3] == "blobs" && parts[n-2] == "uploads":
		return join(n - 3)
	case n >= 3 && (parts[n-2] == "blobs" || parts[n-2] == "manifests" || parts[n-2] == "referrers"):
		return join(n - 2)
	case n >= 3 && parts[n-2] == "tags" && parts[n-1] == "list":
		return join(n - 2)
	}
	return "", false
}
