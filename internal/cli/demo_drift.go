package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/serving"
)

// The demo's drift scene: a cluster cut off from the hub is sent washed-out
// images (salt spray on its camera's lens); it detects drift on its own, keeps its window reports in its
// outbox, and when the link returns the hub learns of it in a few
// kilobytes and sends one alert.

const (
	// demoWindow is the monitoring window of the drift scene, in images;
	// each request carries demoBatch of them.
	demoWindow = 200
	demoBatch  = 50
	// demoReference is how many test images make the reference profile;
	// the rest are the clean requests.
	demoReference = 600
	// demoContrast and demoHaze wash the shifted images out: each pixel p
	// becomes p*demoContrast + demoHaze, half the contrast, brighter.
	demoContrast = 0.5
	demoHaze     = 100
)

// demoMonitoredDeployment is demoDeployment with drift monitoring and alerts.
const demoMonitoredDeployment = demoDeployment + `  monitoring:
    windowSamples: 200
    windowDuration: 1h
    alert: true
    feedbackSamples: 2000
`

// writeIDX writes the images of set as an IDX file (unsigned bytes,
// count × rows × cols), as Fashion-MNIST ships them.
func writeIDX(path string, set *dataset.Set) error {
	var b bytes.Buffer
	for _, v := range []uint32{0x00000803, uint32(set.Len()), uint32(set.Rows), uint32(set.Cols)} {
		if err := binary.Write(&b, binary.BigEndian, v); err != nil {
			return err
		}
	}
	b.Write(set.Images)
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// washedOut returns a copy of set as a fogged lens takes it: each pixel p
// becomes p*demoContrast + demoHaze.
func washedOut(set *dataset.Set) *dataset.Set {
	out := *set
	out.Images = make([]byte, len(set.Images))
	for i, p := range set.Images {
		out.Images[i] = byte(min(float64(p)*demoContrast+demoHaze+0.5, 255))
	}
	return &out
}

// demoAlerts receives the hub's alert webhook messages.
type demoAlerts struct {
	url string
	srv *http.Server
	mu  sync.Mutex
	got []demoAlert
}

// demoAlert is the part of an Alertmanager webhook message the demo shows.
type demoAlert struct {
	Status string `json:"status"`
	Alerts []struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"alerts"`
}

// startAlerts serves an alert webhook receiver on loopback.
func startAlerts() (*demoAlerts, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &demoAlerts{url: "http://" + ln.Addr().String() + "/alerts"}
	a.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m demoAlert
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.got = append(a.got, m)
		a.mu.Unlock()
	})}
	go a.srv.Serve(ln)
	return a, nil
}

func (a *demoAlerts) messages() []demoAlert {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]demoAlert(nil), a.got...)
}

// driftOf returns the drift state of deployment fashion in e's local
// status, and e's outbox figures.
func driftOf(ctx context.Context, e *edge) (*agent.DriftState, int64, int64) {
	s, err := e.status(ctx)
	if err != nil {
		return nil, 0, 0
	}
	for _, m := range s.Models {
		if m.Deployment == "fashion" {
			return m.Drift, s.Outbox.Records, s.Outbox.Bytes
		}
	}
	return nil, s.Outbox.Records, s.Outbox.Bytes
}

// poll calls cond every 50 ms until it holds or limit passes.
func (d *demo) poll(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) || d.ctx.Err() != nil {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// inferAll sends set's images in requests of demoBatch to e and returns
// the share predicted right. With an id prefix, each request carries an
// id, and the true labels of its images follow it to the feedback
// endpoint, as someone who checks what the camera saw would send them.
func (d *demo) inferAll(client *http.Client, e *edge, set *dataset.Set, idPrefix string) (float64, error) {
	right := 0
	for i := 0; i+demoBatch <= set.Len(); i += demoBatch {
		id := ""
		if idPrefix != "" {
			id = fmt.Sprintf("%s-%04d", idPrefix, i)
		}
		preds, _, err := demoInferID(d.ctx, client, e.serve, set, i, demoBatch, id)
		if err != nil {
			return 0, err
		}
		labels := make([]int, len(preds))
		for j, p := range preds {
			labels[j] = int(set.Labels[i+j])
			if p == labels[j] {
				right++
			}
		}
		if id != "" {
			fb := serving.FeedbackRequest{ID: id, Labels: labels}
			if _, err := demoPost(d.ctx, client, "http://"+e.serve+"/v2/models/fashion/feedback", fb); err != nil {
				return 0, fmt.Errorf("feedback: %w", err)
			}
		}
	}
	return float64(right) / float64(set.Len()), nil
}

// hubDriftRow returns the hub's drift summary of deployment fashion in cluster.
func (d *demo) hubDriftRow(cluster string) *v1alpha1.DriftStatus {
	out, err := d.run("get", "modeldeployment", "fashion", "-o", "json")
	var md v1alpha1.ModelDeployment
	if err != nil || json.Unmarshal([]byte(out), &md) != nil {
		return nil
	}
	for _, r := range md.Status.Clusters {
		if r.Cluster == cluster {
			return r.Drift
		}
	}
	return nil
}

// outboxBytesReceived reads, from the hub's /metrics, the outbox bytes
// the hub received from cluster as they crossed the link.
func (d *demo) outboxBytesReceived(cluster string) (float64, error) {
	c, err := (&globals{configPath: d.config}).hub()
	if err != nil {
		return 0, err
	}
	b, err := c.Metrics(d.ctx)
	if err != nil {
		return 0, err
	}
	series := `outpost_hub_outbox_received_bytes_total{cluster="` + cluster + `"}`
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && name == series {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, nil // nothing received yet
}

// driftScene runs the drift scene on cut, whose agent serves 1.1.0 with
// its reference profile (the first demoReference test images).
func (d *demo) driftScene(cut *edge, testSet *dataset.Set, alerts *demoAlerts, edges []*edge, keyFile string, modelSize int64) error {
	client := &http.Client{Timeout: 10 * time.Second}
	clean := testSet.Slice(demoReference, testSet.Len())
	shifted := washedOut(testSet.Slice(0, demoReference))

	d.step("Turn on drift monitoring with alerts: windows of %d images, tested against 1.1.0's reference profile", demoWindow)
	spec := d.dir + "/deployment-monitored.yaml"
	if err := os.WriteFile(spec, []byte(demoMonitoredDeployment), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", spec)
	monitored := d.poll(30*time.Second, func() bool {
		ds, _, _ := driftOf(d.ctx, cut)
		return ds != nil && ds.Version == "1.1.0"
	})
	if !d.check(monitored, "%s monitors fashion 1.1.0", cut.name) {
		return nil
	}

	d.step("Cut %s's link; then salt spray fogs its camera's lens: images wash out (half the contrast, brighter)", cut.name)
	cut.link.Partition(true)
	accClean, err := d.inferAll(client, cut, clean, "")
	if err != nil {
		d.check(false, "inference on %s: %v", cut.name, err)
		return nil
	}
	accShifted, err := d.inferAll(client, cut, shifted, "cam")
	if err != nil {
		d.check(false, "inference on %s: %v", cut.name, err)
		return nil
	}
	windows := uint64((clean.Len() + shifted.Len()) / demoWindow)
	d.note("sent %d ordinary images (%.1f%% predicted right) and %d washed-out ones (%.1f%%); the crew checked each washed-out image and sent its true label to the feedback endpoint, by request id",
		clean.Len(), 100*accClean, shifted.Len(), 100*accShifted)
	var ds *agent.DriftState
	var records, owed int64
	raised := d.poll(30*time.Second, func() bool {
		ds, records, owed = driftOf(d.ctx, cut)
		return ds != nil && ds.Windows >= windows && ds.Alarm
	})
	d.show("agent", "status", "--data", cut.dir)
	if !d.check(raised, "%s, cut off, detected the drift on its own: %d windows, the alarm raised", cut.name, windowsOf(ds)) {
		return nil
	}
	d.check(records >= int64(windows), "its %d window reports wait in its outbox: %d bytes of JSON", records, owed)
	fb := ds.Feedback
	d.check(fb != nil && fb.Labelled == shifted.Len(), "the labels stay on %s: 1.1.0 got %s of the %d labelled images right (LABELLED ACCURACY)",
		cut.name, feedbackShare(fb), shifted.Len())
	row := d.hubDriftRow(cut.name)
	d.check(row == nil || !row.Alarm, "the hub does not know yet")
	run := d.retrainOffline(cut)

	d.step("Restore %s's link: the window reports it kept reach the hub", cut.name)
	before, err := d.outboxBytesReceived(cut.name)
	if err != nil {
		return err
	}
	cut.link.Partition(false)
	learnt := d.poll(30*time.Second, func() bool {
		row = d.hubDriftRow(cut.name)
		return row != nil && row.Alarm && uint64(row.Windows) == windows
	})
	d.check(learnt, "the hub has each of the %d windows once, and the alarm", windows)
	after, err := d.outboxBytesReceived(cut.name)
	if err != nil {
		return err
	}
	sent := after - before
	d.check(sent > 0 && sent <= 16<<10, "they crossed the link in %.0f bytes, %.0f a window (zstd-compressed batches)", sent, sent/float64(windows))
	d.show("get", "modeldeployment", "fashion", "-o", "wide")
	d.show("drift", "status")
	d.show("drift", "show", "fashion", "--cluster", cut.name)
	fired := d.poll(15*time.Second, func() bool { return len(alerts.messages()) > 0 })
	msgs := alerts.messages()
	firing := 0
	for _, m := range msgs {
		if m.Status == "firing" && len(m.Alerts) == 1 && m.Alerts[0].Labels["cluster"] == cut.name {
			firing++
			d.note("alert received: %s", m.Alerts[0].Annotations["summary"])
			d.note("  %s", m.Alerts[0].Annotations["description"])
		}
	}
	d.check(fired && firing == 1 && len(msgs) == 1, "the alert webhook got one firing alert (%d message(s) in all)", len(msgs))
	if run != nil {
		d.retrainSynced(cut, run, edges, keyFile, shifted, accShifted, modelSize)
	}
	return nil
}

// feedbackShare shows a version's accuracy on labelled images, "-" when
// none came back.
func feedbackShare(fb *agent.FeedbackState) string {
	if fb == nil || fb.Labelled == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(fb.Correct)/float64(fb.Labelled))
}

func windowsOf(ds *agent.DriftState) uint64 {
	if ds == nil {
		return 0
	}
	return ds.Windows
}

// stop shuts the receiver down.
func (a *demoAlerts) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := a.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		a.srv.Close()
	}
}
