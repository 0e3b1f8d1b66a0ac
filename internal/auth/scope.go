package auth

import (
	"fmt"
	"net/http"
	"path"
	"strings"

	"outpost.dev/outpost/api/v1alpha1"
)

// ClusterMay returns nil when a credential of cluster may send a request with method to
// urlPath, and an error wrapping ErrForbidden otherwise. A cluster may:
//
//   - read the registry: GET or HEAD of /v2/ and anything under it;
//   - GET its own Cluster, /apis/ml.outpost.dev/v1alpha1/clusters/{cluster};
//   - GET its own desired state, .../clusters/{cluster}/desiredstate;
//   - POST its own report, .../clusters/{cluster}/report;
//   - POST its own outbox records, .../clusters/{cluster}/outbox.
//
// Nothing else: not another cluster's resource, desired state or report, no list, no write.
func ClusterMay(cluster, method, urlPath string) error {
	read := method == http.MethodGet || method == http.MethodHead
	if clean := path.Clean(urlPath); clean != strings.TrimSuffix(urlPath, "/") && clean != urlPath {
		return fmt.Errorf("cluster %q may not %s %s: the path is not in canonical form: %w", cluster, method, urlPath, ErrForbidden)
	}
	if urlPath == "/v2" || urlPath == "/v2/" || strings.HasPrefix(urlPath, "/v2/") {
		if read {
			return nil
		}
		return fmt.Errorf("cluster %q may not write to the registry (%s %s): %w", cluster, method, urlPath, ErrForbidden)
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
