package telemetry

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// CacheMetrics records the content cache's downloads and evictions. A nil
// *CacheMetrics records nothing.
type CacheMetrics struct {
	inflight  metric.Int64UpDownCounter
	evictions metric.Int64Counter
}

// NewCacheMetrics creates the cache's instruments on m (nil: records
// nothing). The cache size is an observable gauge: see ObserveCacheSize.
func NewCacheMetrics(m metric.Meter) (*CacheMetrics, error) {
	m = meterOrNoop(m)
	inflight, err := m.Int64UpDownCounter("portcullis_inflight_downloads",
		metric.WithDescription("Upstream blob downloads in progress (each shared by every client reading it)."), metric.WithUnit("{download}"))
	if err != nil {
		return nil, err
	}
	evictions, err := m.Int64Counter("portcullis_cache_evictions_total",
		metric.WithDescription("Blobs and manifests evicted from the cache to stay under cache.max_bytes."), metric.WithUnit("{item}"))
	if err != nil {
		return nil, err
	}
	evictions.Add(context.Background(), 0) // exists from the start
	inflight.Add(context.Background(), 0)
	return &CacheMetrics{inflight: inflight, evictions: evictions}, nil
}

// DownloadStarted and DownloadEnded bracket one upstream blob download.
func (c *CacheMetrics) DownloadStarted() {
	if c != nil {
		c.inflight.Add(context.Background(), 1)
	}
}

// DownloadEnded: see DownloadStarted.
func (c *CacheMetrics) DownloadEnded() {
	if c != nil {
		c.inflight.Add(context.Background(), -1)
	}
}

// Evicted records one item evicted.
func (c *CacheMetrics) Evicted() {
	if c != nil {
		c.evictions.Add(context.Background(), 1)
	}
}

// ObserveCacheSize reports bytes() as portcullis_cache_size_bytes on every
// collection.
func ObserveCacheSize(m metric.Meter, bytes func() int64) error {
	_, err := meterOrNoop(m).Int64ObservableGauge("portcullis_cache_size_bytes",
		metric.WithDescription("Bytes held by the content cache (what eviction counts)."), metric.WithUnit("By"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(bytes())
			return nil
		}))
	return err
}

// upstreamDurationBuckets are the boundaries, in seconds, of
// portcullis_upstream_request_duration_seconds.
var upstreamDurationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// UpstreamMetrics records the requests sent to one configured upstream. A
// nil *UpstreamMetrics records nothing.
type UpstreamMetrics struct {
	name     string
	requests metric.Int64Counter
	duration metric.Float64Histogram
	timeOpts []metric.RecordOption
	codeOpts [maxStatus - minStatus + 2]atomic.Pointer[[]metric.AddOption]
}

// NewUpstreamMetrics creates the instruments of the upstream that clients
// call name (a configured name, never a client-supplied string).
func NewUpstreamMetrics(m metric.Meter, name string) (*UpstreamMetrics, error) {
	m = meterOrNoop(m)
	requests, err := m.Int64Counter("portcullis_upstream_requests_total",
		metric.WithDescription("HTTP requests sent to upstream registries (token requests and retries included), by upstream and status code; code is \"error\" when no response came."),
		metric.WithUnit("{request}"))
	if err != nil {
		return nil, err
	}
	duration, err := m.Float64Histogram("portcullis_upstream_request_duration_seconds",
		metric.WithDescription("Time from sending an upstream request to its response headers (or its failure)."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(upstreamDurationBuckets...))
	if err != nil {
		return nil, err
	}
	return &UpstreamMetrics{
		name: name, requests: requests, duration: duration,
		timeOpts: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("upstream", name)))},
	}, nil
}

// Request records one upstream request that took d; status is the HTTP
// status, 0 when no response came.
func (u *UpstreamMetrics) Request(ctx context.Context, status int, d time.Duration) {
	if u == nil {
		return
	}
	u.requests.Add(ctx, 1, u.codeOptions(status)...)
	u.duration.Record(ctx, d.Seconds(), u.timeOpts...)
}

func (u *UpstreamMetrics) codeOptions(status int) []metric.AddOption {
	slot := status - minStatus
	if status < minStatus || status > maxStatus {
		slot = maxStatus - minStatus + 1
	}
	p := &u.codeOpts[slot]
	if opts := p.Load(); opts != nil {
		return *opts
	}
	code := "error"
	if slot <= maxStatus-minStatus {
		code = strconv.Itoa(status)
	}
	opts := addOpts(attribute.String("upstream", u.name), attribute.String("code", code))
	p.Store(&opts)
	return opts
}

// scanDurationBuckets are the boundaries, in seconds, of
// portcullis_scan_duration_seconds.
var scanDurationBuckets = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// PipelineMetrics records scans and verdicts. A nil *PipelineMetrics
// records nothing.
type PipelineMetrics struct {
	scans       metric.Int64Counter
	scanTime    metric.Float64Histogram
	done        []metric.AddOption
	failed      []metric.AddOption
	verdicts    metric.Int64Counter
	verdictSets boundedLabels
}

// NewPipelineMetrics creates the scan and verdict instruments on m (nil:
// records nothing). The queue depth is observable: see ObserveQueueDepth.
func NewPipelineMetrics(m metric.Meter) (*PipelineMetrics, error) {
	m = meterOrNoop(m)
	scans, err := m.Int64Counter("portcullis_scans_total",
		metric.WithDescription("Image evaluations (scan, signatures, facts) finished, by result: done or failed."), metric.WithUnit("{scan}"))
	if err != nil {
		return nil, err
	}
	scanTime, err := m.Float64Histogram("portcullis_scan_duration_seconds",
		metric.WithDescription("Time one image evaluation took, done or failed."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(scanDurationBuckets...))
	if err != nil {
		return nil, err
	}
	verdicts, err := m.Int64Counter("portcullis_verdicts_total",
		metric.WithDescription("Policy decisions written, by the rule's verdict (allow, warn, block) and the rule's mode (enforce, warn, audit)."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	p := &PipelineMetrics{
		scans: scans, scanTime: scanTime, verdicts: verdicts,
		done:        addOpts(attribute.String("result", "done")),
		failed:      addOpts(attribute.String("result", "failed")),
		verdictSets: boundedLabels{keys: []string{"verdict", "mode"}, max: maxVerdictPairs, other: "other"},
	}
	p.scans.Add(context.Background(), 0, p.done...) // both exist from the start
	p.scans.Add(context.Background(), 0, p.failed...)
	return p, nil
}

// ScanFinished records one evaluation that ended, and how long it took
// (not recorded when d is negative: unknown).
func (p *PipelineMetrics) ScanFinished(ctx context.Context, ok bool, d time.Duration) {
	if p == nil {
		return
	}
	opts := p.failed
	if ok {
		opts = p.done
	}
	p.scans.Add(ctx, 1, opts...)
	if d >= 0 {
		p.scanTime.Record(ctx, d.Seconds())
	}
}

// Verdict records one decision written: the rule's verdict and its mode.
func (p *PipelineMetrics) Verdict(ctx context.Context, verdict, mode string) {
	if p == nil {
		return
	}
	p.verdicts.Add(ctx, 1, p.verdictSets.options(verdict, mode)...)
}

// maxVerdictPairs bounds the (verdict, mode) label pairs: three verdicts
// times three modes, with room to spare.
const maxVerdictPairs = 16

// observeTimeout bounds one observable callback that does I/O (the queue
// length may be a Redis round trip).
const observeTimeout = 2 * time.Second

// ObserveQueueDepth reports length() as portcullis_scan_queue_depth on
// every collection (each scrape, each OTLP export: nothing polls it in
// between). A failing length() leaves the series out of that collection.
func ObserveQueueDepth(m metric.Meter, length func(context.Context) (int64, error)) error {
	_, err := meterOrNoop(m).Int64ObservableGauge("portcullis_scan_queue_depth",
		metric.WithDescription("Images waiting for evaluation in the scan queue (cluster-wide with Redis)."), metric.WithUnit("{image}"),
		metric.WithInt64Callback(func(ctx context.Context, o metric.Int64Observer) error {
			ctx, cancel := context.WithTimeout(ctx, observeTimeout)
			defer cancel()
			n, err := length(ctx)
			if err != nil {
				return nil // no value this time; the exporter would only log it
			}
			o.Observe(n)
			return nil
		}))
	return err
}

// ObserveClamdSkipped reports skipped() as
// portcullis_clamd_skipped_files_total on every collection: the files of
// scanned layers larger than scan.clamd_max_file, which clamd never saw.
// Without it an operator could not tell that a scan passed files clamd
// did not read.
func ObserveClamdSkipped(m metric.Meter, skipped func() int64) error {
	_, err := meterOrNoop(m).Int64ObservableCounter("portcullis_clamd_skipped_files_total",
		metric.WithDescription("Files of scanned layers larger than scan.clamd_max_file, not sent to clamd (hash signatures still apply)."),
		metric.WithUnit("{file}"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(skipped())
			return nil
		}))
	return err
}

// VulnDBStatus is what the vulnerability database gauges report.
type VulnDBStatus struct {
	Records int64
	BuiltAt time.Time // when its content last changed; zero: nothing imported
}

// ObserveVulnDB reports status() as portcullis_vulndb_records and
// portcullis_vulndb_age_seconds (seconds since its content last changed,
// per now) on every collection. An empty database has records 0 and no
// age; a failing status() leaves both out of that collection.
func ObserveVulnDB(m metric.Meter, status func(context.Context) (VulnDBStatus, error), now func() time.Time) error {
	m = meterOrNoop(m)
	records, err := m.Int64ObservableGauge("portcullis_vulndb_records",
		metric.WithDescription("Vulnerability records in the database the server matches against."), metric.WithUnit("{record}"))
	if err != nil {
		return err
	}
	age, err := m.Float64ObservableGauge("portcullis_vulndb_age_seconds",
		metric.WithDescription("Seconds since the vulnerability database's content last changed."), metric.WithUnit("s"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, observeTimeout)
		defer cancel()
		st, err := status(ctx)
		if err != nil {
			return nil
		}
		o.ObserveInt64(records, st.Records)
		if !st.BuiltAt.IsZero() {
			o.ObserveFloat64(age, max(0, now().Sub(st.BuiltAt).Seconds()))
		}
		return nil
	}, records, age)
	return err
}
