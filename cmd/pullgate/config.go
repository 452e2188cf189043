package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pullgate/pullgate/proxy/gate"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/scanner"
	"github.com/pullgate/pullgate/storage"
)

// Config is everything pullgate serve reads. Defaults are set by
// defaultConfig; a YAML file (--config) overrides them, PULLGATE_*
// environment variables override the file, and flags override both.
// configs/pullgate.yaml documents every field.
type Config struct {
	Listen  string `yaml:"listen"`
	DataDir string `yaml:"data_dir"`
	// MaxStoreBytes bounds the blob store; past it the blobs used least
	// recently are removed (they are fetched and scanned again if asked
	// for). 0: unbounded.
	MaxStoreBytes int64 `yaml:"max_store_bytes"`
	// Storage is where blobs and manifests live: the filesystem under
	// data_dir, or an S3 bucket shared by replicas.
	Storage   StorageConfig       `yaml:"storage"`
	Redis     string              `yaml:"redis"`
	Upstreams map[string]Upstream `yaml:"upstreams"`
	Rules     []string            `yaml:"rules"`
	Workers   int                 `yaml:"workers"`
	Log       LogConfig           `yaml:"log"`
	Gate      GateConfig          `yaml:"gate"`
	Scan      ScanConfig          `yaml:"scan"`
	TLS       ListenTLS           `yaml:"tls"`
	Gateway   GatewayConfig       `yaml:"gateway"`
	// Platforms of a multi-platform image that are fetched and scanned
	// ahead of need (index prefetch, warm), as "os/arch[/variant]".
	Platforms []string   `yaml:"platforms"`
	Warm      WarmConfig `yaml:"warm"`
	// Policy is the publisher policy per registry: repository globs to
	// allow and deny, checked before any scan.
	Policy map[string]gate.RepoPolicy `yaml:"policy"`
	// KnownBad is a file of sha256 digests (blobs, image manifests, files
	// inside layers) that always block.
	KnownBad string `yaml:"known_bad"`
	// Decision turns findings into block, warn or pass.
	Decision DecisionConfig `yaml:"decision"`
	// Admin is the /admin/ page and API, the audit log and alerts.
	Admin AdminConfig `yaml:"admin"`
	// Serve bounds the blob downloads to clients.
	Serve ServeConfig `yaml:"serve"`
}

// ServeConfig bounds blob downloads: how many at once, how long a client
// may take no bytes, and how often abandoned uploads are reaped.
type ServeConfig struct {
	// MaxBlobStreams is how many blob downloads are served at once (each
	// holds one 64 KiB buffer). Default 512.
	MaxBlobStreams int `yaml:"max_blob_streams"`
	// BlobStreamWait is how long a download over the cap waits for a slot
	// before it is answered 429 with Retry-After BlobStreamRetryAfter.
	// Defaults 2s and 5s.
	BlobStreamWait       Duration `yaml:"blob_stream_wait"`
	BlobStreamRetryAfter Duration `yaml:"blob_stream_retry_after"`
	// BlobWriteTimeout cuts a download whose client takes no bytes for
	// this long. Default 60s.
	BlobWriteTimeout Duration `yaml:"blob_write_timeout"`
	// ReapUploadsEvery is how often uploads older than gate.ingest_timeout
	// (left by a killed process) are removed. Default 5m.
	ReapUploadsEvery Duration `yaml:"reap_uploads_every"`
}

// Upstream is one registry pullgate fetches from. Credentials come from
// username with password, password_file or token, or from credentials_file
// (a Docker config.json); they are never logged or sent to clients.
type Upstream struct {
	URL             string `yaml:"url"`
	Username        string `yaml:"username"`
	Password        string `yaml:"password"`
	PasswordFile    string `yaml:"password_file"`
	Token           string `yaml:"token"`
	CredentialsFile string `yaml:"credentials_file"`
	MaxConcurrent   int    `yaml:"max_concurrent"`
	Insecure        bool   `yaml:"insecure"`
	// AllowNetworks (CIDRs) are the loopback, private or other non-public
	// networks that this registry's redirects, token realm and DNS answers
	// may lead to; default none: only public addresses, plus the url's own
	// host:port.
	AllowNetworks []string `yaml:"allow_networks"`
	// SlotWait bounds a request's wait for one of the max_concurrent
	// connection slots; past it the pull is answered 429 with Retry-After.
	// 0: 10s; negative: as long as the client waits.
	SlotWait Duration `yaml:"slot_wait"`
	// IdleTimeout fails a blob download that sends no byte for this long
	// (the pull is refused, nothing is stored, the slot is freed).
	// 0: 30s; negative: never.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// allowNetworks parses AllowNetworks.
func (u Upstream) allowNetworks() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(u.AllowNetworks))
	for _, s := range u.AllowNetworks {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("allow_networks: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// LogConfig sets the structured logs' level (debug, info, warn, error) and
// format (text or json).
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// GateConfig holds the gate's timing and size limits.
type GateConfig struct {
	Hold           Duration `yaml:"hold"`
	HoldDocker     Duration `yaml:"hold_docker"`
	RetryAfter     Duration `yaml:"retry_after"`
	TagTTL         Duration `yaml:"tag_ttl"`
	IngestTimeout  Duration `yaml:"ingest_timeout"`
	MaxBlobBytes   int64    `yaml:"max_blob_bytes"`
	MaxConfigBytes int64    `yaml:"max_config_bytes"`
	MaxLayers      int      `yaml:"max_layers"`
	IngestLease    Duration `yaml:"ingest_lease"`
	// Mode is how images are gated: "stream" (the manifest is served at
	// once, layers are streamed while they are scanned and only their
	// tails wait for the verdict, the config waits for the image's
	// decision) or "hold" (the manifest waits for the whole image's
	// decision). Default hold: podman and skopeo show a refusal that
	// comes mid-blob as "unexpected EOF", without the reason
	// (docs/architecture.md, "Clients and gate modes").
	Mode string `yaml:"mode"`
	// AgentModes picks the mode by User-Agent prefix before Mode (the
	// longest prefix wins). Default {"docker/": "stream", "containerd/":
	// "stream"}: both ask for the config beside the layers, and the
	// config's refusal shows them the reason (docs/architecture.md,
	// "Clients and gate modes").
	AgentModes map[string]string `yaml:"agent_modes"`
}

// ScanConfig holds the scanner's limits; every one fails closed.
type ScanConfig struct {
	MaxLayerBytes int64    `yaml:"max_layer_bytes"`
	MaxFiles      int64    `yaml:"max_files"`
	MaxFileBytes  int64    `yaml:"max_file_bytes"`
	Window        int64    `yaml:"window"`
	LayerTimeout  Duration `yaml:"layer_timeout"`
	// MaxArchiveDepth is how many archives deep files and base64 payloads
	// in scripts are unpacked and scanned (a .tar.gz in a zip is two);
	// deeper archives are reported as ArchiveTooDeep. Default 3.
	MaxArchiveDepth int `yaml:"max_archive_depth"`
}

// Duration reads "25s" or "10m" from YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

func defaultConfig() Config {
	return Config{
		Listen:    ":5000",
		DataDir:   "./data",
		Rules:     []string{},
		Upstreams: map[string]Upstream{"docker.io": {URL: "https://registry-1.docker.io", AllowNetworks: []string{}, SlotWait: Duration(upstream.DefaultSlotWait), IdleTimeout: Duration(upstream.DefaultIdleTimeout)}},
		Log:       LogConfig{Level: "info", Format: "text"},
		Gate: GateConfig{
			Hold:           Duration(25 * time.Second),
			HoldDocker:     Duration(10 * time.Minute),
			RetryAfter:     Duration(10 * time.Second),
			TagTTL:         Duration(60 * time.Second),
			IngestTimeout:  Duration(30 * time.Minute),
			MaxBlobBytes:   16 << 30,
			MaxConfigBytes: 8 << 20,
			MaxLayers:      500,
			IngestLease:    Duration(10 * time.Second),
			Mode:           "hold",
			AgentModes:     map[string]string{"docker/": "stream", "containerd/": "stream"},
		},
		Scan: ScanConfig{
			MaxLayerBytes:   8 << 30,
			MaxFiles:        1_000_000,
			MaxFileBytes:    2 << 30,
			Window:          16 << 20,
			LayerTimeout:    Duration(10 * time.Minute),
			MaxArchiveDepth: 3,
		},
		Platforms: []string{"linux/amd64", "linux/arm64"},
		Policy:    map[string]gate.RepoPolicy{},
		Storage:   StorageConfig{Driver: "filesystem"},
		Decision: DecisionConfig{
			Actions:             map[string]string{},
			MediumToBlock:       scanner.DefaultPolicy().MediumToBlock,
			PackerCorroborators: scanner.DefaultPolicy().PackerCorroborators,
		},
		Warm: WarmConfig{Images: []string{}, Interval: Duration(time.Hour), Timeout: Duration(30 * time.Minute)},
		Admin: AdminConfig{AuditRetention: storage.DefaultAuditRetention,
			AuditFileBytes: storage.DefaultAuditFileBytes, AuditFileKeep: storage.DefaultAuditFileKeep},
		Serve: ServeConfig{
			MaxBlobStreams:       512,
			BlobStreamWait:       Duration(2 * time.Second),
			BlobStreamRetryAfter: Duration(5 * time.Second),
			BlobWriteTimeout:     Duration(60 * time.Second),
			ReapUploadsEvery:     Duration(5 * time.Minute),
		},
	}
}

// DecisionConfig is the image-level decision: per-category actions
// (block, warn, ignore; a category not listed is decided by severity), how
// many different medium indicators block together, and which low findings
// count as medium next to a packed executable.
type DecisionConfig struct {
	Actions             map[string]string `yaml:"actions"`
	MediumToBlock       int               `yaml:"medium_to_block"`
	PackerCorroborators []string          `yaml:"packer_corroborators"`
}

// policy is the scanner's Policy for this config.
func (d DecisionConfig) policy() scanner.Policy {
	p := scanner.Policy{MediumToBlock: d.MediumToBlock, PackerCorroborators: d.PackerCorroborators, Actions: map[string]scanner.Action{}}
	for cat, a := range d.Actions {
		p.Actions[cat] = scanner.Action(a)
	}
	return p
}

// ListenTLS serves the main listener over TLS: Docker only uses a mirror
// over plain HTTP when it is listed in insecure-registries. The files are
// read again when they change, so a renewed certificate needs no restart.
type ListenTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// StorageConfig picks the blob store's driver.
type StorageConfig struct {
	Driver string   `yaml:"driver"` // "filesystem" or "s3"
	S3     S3Config `yaml:"s3"`
}

// S3Config is a bucket on AWS S3 or an S3-compatible service.
type S3Config struct {
	Bucket        string `yaml:"bucket"`
	Region        string `yaml:"region"`
	Endpoint      string `yaml:"endpoint"`
	AccessKey     string `yaml:"access_key"`
	SecretKey     string `yaml:"secret_key"`
	SecretKeyFile string `yaml:"secret_key_file"`
	RootDirectory string `yaml:"root_directory"`
	Insecure      bool   `yaml:"insecure"`
	PathStyle     bool   `yaml:"path_style"`
}
