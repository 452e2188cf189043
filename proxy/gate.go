package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/distribution/distribution/v3/manifest/schema2"
	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/pullgate/pullgate/internal/verdict"
	"github.com/pullgate/pullgate/proxy/upstream"
	"github.com/pullgate/pullgate/storage"
)

// decision is the gate's answer for one image manifest. err is what the
// client gets when it is not allowed.
type decision struct {
	outcome  verdict.Outcome
	findings []storage.Finding
	message  string
	err      error
	warnings []string // Warning header values for an image served with warnings
}

// imageManifest is the part of a Docker schema2 or OCI image manifest the
// gate reads: the config and the layers.
type imageManifest struct {
	Config descriptor   `json:"config"`
	Layers []descriptor `json:"layers"`
}

type descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	URLs      []string      `json:"urls"`
	Data      []byte        `json:"data"`
}

// checkIndex refuses an index whose entries a client would fetch from
// anywhere but here: containerd fetches a descriptor from its urls first
// and may take embedded data as the content, so a child manifest (and all
// it names) would reach the client past the gate.
func checkIndex(body []byte) error {
	var idx struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return fmt.Errorf("malformed index: %v", err)
	}
	for _, d := range idx.Manifests {
		if len(d.URLs) > 0 {
			return fmt.Errorf("index entry %s names urls to fetch it from, which would take it past pullgate", truncate(string(d.Digest), 80))
		}
		if len(d.Data) > 0 {
			return fmt.Errorf("index entry %s carries its content inline (data), which would take it past pullgate", truncate(string(d.Digest), 80))
		}
	}
	return nil
}

// layerTypes are the media types of tar layers, walked file by file. A
// layer of any other type (an OCI artifact: a chart, a signature, an SBOM)
// is scanned as raw bytes.
var layerTypes = map[string]bool{
	schema2.MediaTypeLayer:             true,
	schema2.MediaTypeUncompressedLayer: true,
	schema2.MediaTypeForeignLayer:      true, // refused below when it has URLs
	ocispec.MediaTypeImageLayer:        true,
	ocispec.MediaTypeImageLayerGzip:    true,
	ocispec.MediaTypeImageLayerZstd:    true,
	//lint:ignore SA1019 deprecated for new images, still found in old ones
	ocispec.MediaTypeImageLayerNonDistributable: true,
	//lint:ignore SA1019 as above
	ocispec.MediaTypeImageLayerNonDistributableGzip: true,
	//lint:ignore SA1019 as above
	ocispec.MediaTypeImageLayerNonDistributableZstd: true,
}

// layerContext is how a layer of the given media type is scanned.
func layerContext(mediaType string) storage.Context {
	if layerTypes[mediaType] {
		return storage.ContextLayer
	}
	return storage.ContextArtifact
}

// blobsOf lists the blobs an image manifest needs, config first, each in
// the context it is read in: the config as a config, each layer as a tar
// layer or, when its media type is not one, as an artifact. A digest the
// manifest lists in two roles is listed twice and judged in both.
func (s *Server) blobsOf(body []byte) ([]blobRef, error) {
	var m imageManifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("malformed image manifest: %v", err)
	}
	if len(m.Layers) > s.opts.MaxManifestLayers {
		return nil, fmt.Errorf("%d layers, over the limit of %d", len(m.Layers), s.opts.MaxManifestLayers)
	}
	refs := make([]blobRef, 0, 1+len(m.Layers))
	for i, d := range append([]descriptor{m.Config}, m.Layers...) {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("blob %d: invalid digest %q", i, truncate(string(d.Digest), 80))
		}
		if d.Size < 0 {
			return nil, fmt.Errorf("blob %s: negative size", d.Digest)
		}
		if len(d.URLs) > 0 {
			// A foreign layer lives outside the registry; fetching it from
			// wherever it says would make pullgate an open proxy.
			return nil, fmt.Errorf("layer %s is a foreign layer (urls), which pullgate does not fetch", d.Digest)
		}
		if len(d.Data) > 0 {
			// Embedded content reaches a client without a blob request,
			// so without the gate.
			return nil, fmt.Errorf("blob %s carries its content inline (data), which pullgate does not serve", d.Digest)
		}
		c := storage.ContextConfig
		if i > 0 {
			c = layerContext(d.MediaType)
		}
		refs = append(refs, blobRef{Digest: d.Digest, Size: d.Size, Context: c})
	}
	return refs, nil
}

// decide holds an image manifest until every blob it names has a verdict
// under the current ruleset (or the hold runs out), and decides.
func (s *Server) decide(ctx context.Context, up *upstream.Registry, t target, dgst digest.Digest, body []byte, hold time.Duration) decision {
	image := t.imageAt(dgst)
	if d, ok := s.overridden(ctx, dgst, image); ok {
		return d
	}
	refs, err := s.blobsOf(body)
	if err != nil {
		msg := fmt.Sprintf("pullgate: %s refused: %v", image, err)
		return decision{outcome: verdict.Failed, message: msg, err: &apiError{Code: errcode.ErrorCodeManifestInvalid, Message: msg}}
	}
	if d, ok := s.knownBad(image, dgst, refs); ok {
		return d
	}

	holdCtx, cancel := context.WithTimeout(ctx, hold)
	defer cancel()
	type answer struct {
		ref blobRef
		v   storage.Verdict
		err error
	}
	answers := make(chan answer, len(refs))
	for _, ref := range refs {
		go func() {
			v, err := s.verdict(holdCtx, up, t.Repo, ref)
			answers <- answer{ref, v, err}
		}()
	}

	var (
		worst     *decision
		done      int
		stillBusy bool
		clean     []storage.Verdict
	)
	config := refs[0].Digest
	for range refs {
		a := <-answers
		switch {
		case a.err == nil && a.v.Status == storage.StatusError:
			msg := fmt.Sprintf("pullgate: %s refused: %s %s could not be scanned: %s", image, a.ref.noun(), a.ref.Digest, a.v.Reason)
			worst = pick(worst, decision{outcome: verdict.Failed, message: msg, err: errDenied(msg)})
		case a.err == nil && s.blobBlocked(a.v):
			// Findings only add up: a blob that is refused alone refuses
			// the image. Answer now; the other scans finish in the background.
			cancel()
			j := s.judge([]storage.Verdict{a.v})
			return blockedBy(image, j.blocked, config)
		case a.err == nil:
			done++
			clean = append(clean, a.v)
			s.touch(a.ref.Digest)
		case errors.Is(a.err, context.DeadlineExceeded) && ctx.Err() == nil:
			stillBusy = true
		case ctx.Err() != nil:
			return decision{outcome: verdict.Pending, message: "client went away", err: ctx.Err()}
		default:
			msg := fmt.Sprintf("pullgate: %s refused: %v", image, a.err)
			worst = pick(worst, decision{outcome: verdict.UpstreamFailed, message: msg, err: upstreamError(fmt.Sprintf("pullgate: %s", image), a.err)})
		}
	}
	if worst != nil {
		return *worst
	}
	if stillBusy {
		msg := fmt.Sprintf("pullgate: %s is still being scanned (%d of %d blobs done); retry in %s", image, done, len(refs), s.opts.RetryAfter)
		return decision{outcome: verdict.Pending, message: msg, err: errStillScanning(msg, s.opts.RetryAfter)}
	}
	// Every blob passes alone; together they may not (two medium
	// indicators in different layers, a packed binary and a wallet).
	j := s.judge(clean)
	if len(j.blocked) > 0 {
		return blockedBy(image, j.blocked, config)
	}
	d := decision{outcome: verdict.Allowed, findings: j.warnings}
	if len(j.warnings) > 0 {
		d.message = fmt.Sprintf("pullgate: %s allowed with %d warnings: %s", image, len(j.warnings), describe(j.warnings[0], config))
		d.warnings = warningHeader(image, j.warnings, config)
	}
	return d
}

// pick keeps the decision that says most: a content error over an upstream one.
func pick(cur *decision, d decision) *decision {
	if cur == nil || (cur.outcome == verdict.UpstreamFailed && d.outcome == verdict.Failed) {
		return &d
	}
	return cur
}

// verdict returns a blob's verdict under the current ruleset, waiting for
// its ingest (shared with every other request for it) when there is none.
func (s *Server) verdict(ctx context.Context, up *upstream.Registry, repo string, ref blobRef) (storage.Verdict, error) {
	rid := s.scanner().RulesetID()
	v, err := s.opts.Verdicts.Verdict(ctx, ref.Digest, rid, ref.Context)
	switch {
	case err == nil && s.usable(ctx, v):
		s.metrics.verdictCache(true)
		return v, nil
	case err != nil && ctx.Err() == nil && !errors.Is(err, storage.ErrNotFound):
		// Fail closed: without the verdict store nothing is known.
		return storage.Verdict{}, fmt.Errorf("%w: verdict store: %v", errTransient, err)
	}
	// Not found, or the hold ran out during the look-up: the ingest starts
	// either way (it reads the verdict again under its own deadline), so a
	// retry finds it done, and the caller answers "still scanning".
	s.metrics.verdictCache(false)
	info := FlightInfo{Digest: ref.Digest, Registry: up.Name(), Repo: repo, Kind: ref.noun(), Context: ref.Context, Size: ref.Size}
	fl := s.flights.start(info, ref.Prio, func(fl *flight) (storage.Verdict, error) { return s.ingest(fl, up, repo, ref) })
	return fl.wait(ctx)
}

// overridden applies an operator's decision on the digest itself (of an
// image manifest or a blob), which stands until the operator removes it.
// Repository overrides are not read here: a repository deny refuses in
// admitName, and a repository allow only lifts the publisher policy, so
// neither turns a blocked digest into a served one.
func (s *Server) overridden(ctx context.Context, dgst digest.Digest, image string) (decision, bool) {
	o, err := s.opts.Verdicts.Override(ctx, dgst.String())
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return decision{}, false
	case err != nil:
		msg := fmt.Sprintf("pullgate: %s refused: verdict store unavailable: %v", image, err)
		return decision{outcome: verdict.UpstreamFailed, message: msg, err: errUnavailable(msg)}, true
	case o.Action == storage.Deny:
		msg := fmt.Sprintf("pullgate: %s denied by operator %s: %s", image, o.Actor, o.Reason)
		return decision{outcome: verdict.Overridden, message: msg, err: errDenied(msg)}, true
	default:
		msg := fmt.Sprintf("pullgate: %s allowed by operator %s (%s): %s", image, o.Actor, o.Subject, o.Reason)
		return decision{outcome: verdict.Overridden, message: msg}, true
	}
}

// knownBad blocks an image whose manifest or any blob is on the known-bad
// list, before anything is fetched.
func (s *Server) knownBad(image string, dgst digest.Digest, refs []blobRef) (decision, bool) {
	if s.opts.KnownBad == nil {
		return decision{}, false
	}
	for _, ref := range append([]blobRef{{Digest: dgst}}, refs...) {
		if !s.opts.KnownBad.Has(ref.Digest) {
			continue
		}
		f := storage.Finding{Rule: "KnownBadDigest", Category: "known-bad", Severity: "high",
			Description: "digest on the known-bad list", Path: "", Layer: ref.Digest}
		msg := fmt.Sprintf("pullgate: %s blocked: %s is on the known-bad list", image, ref.Digest)
		return decision{outcome: verdict.Blocked, findings: []storage.Finding{f}, message: msg, err: errDenied(msg)}, true
	}
	return decision{}, false
}

// blobVerdict judges a blob asked for on its own. It is judged in every
// context a manifest names it in (each must pass alone), or as an artifact
// when no manifest does; and a blocked verdict under the current ruleset in
// any context, records of earlier releases included, refuses it whatever
// it is asked as: the same bytes are not served by asking for them another
// way. It returns the verdict that refuses, else the last clean one.
func (s *Server) blobVerdict(ctx context.Context, up *upstream.Registry, t target, links storage.Links) (blobRef, storage.Verdict, error) {
	rid := s.scanner().RulesetID()
	stored, err := s.opts.Verdicts.Verdicts(ctx, t.Digest)
	if err != nil && ctx.Err() != nil {
		return blobRef{}, storage.Verdict{}, fmt.Errorf("look up verdicts for %s: %w", t.Digest, ctx.Err())
	}
	if err != nil {
		return blobRef{}, storage.Verdict{}, fmt.Errorf("%w: verdict store: %v", errTransient, err)
	}
	for _, v := range stored {
		// Findings refuse the bytes however they are asked for. A scan
		// error in a role says only that the bytes are not that kind of
		// thing (a layer is no JSON config): anyone can name a digest in
		// any role in a manifest of their own, so an error in a role the
		// blob is not judged in here refuses nothing.
		if v.RulesetID == rid && v.Status != storage.StatusError && s.blobBlocked(v) {
			return blobRef{Digest: t.Digest, Size: -1, Context: v.Context}, v, nil
		}
	}
	contexts := links.Roles
	if len(contexts) == 0 {
		contexts = []storage.Context{storage.ContextArtifact}
	}
	// Every role must pass on its findings; a role in which the bytes
	// cannot be read at all (an error verdict) refuses only when no role
	// reads them clean: a client using the blob in that role could not
	// parse it either, and it needs a manifest naming it so, which the
	// gate refuses.
	var clean, failed *blobRef
	var cv, fv storage.Verdict
	for _, c := range contexts {
		ref := blobRef{Digest: t.Digest, Size: -1, Context: c}
		v, err := s.verdict(ctx, up, t.Repo, ref)
		switch {
		case err != nil:
			return ref, v, err
		case v.Status == storage.StatusError:
			if failed == nil {
				failed, fv = &ref, v
			}
		case s.blobBlocked(v):
			return ref, v, nil
		default:
			clean, cv = &ref, v
		}
	}
	if clean != nil {
		return *clean, cv, nil
	}
	return *failed, fv, nil
}
