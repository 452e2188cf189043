package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	goredis "github.com/redis/go-redis/v9"

	"github.com/pullgate/pullgate/storage"
	"github.com/pullgate/pullgate/storage/internal/dcheck"
	"github.com/pullgate/pullgate/storage/internal/kit"
)

// Key layout, all under one prefix so pullgate can share a Redis:
//
//	pullgate:verdicts:<digest>  hash  "<ruleset id>|<context>" -> storage.Verdict JSON
//	                                  (earlier releases: ruleset id -> JSON)
//	pullgate:links:<digest>     set   repositories that carry the digest
//	pullgate:roles:<digest>     set   contexts manifests name it in
//	pullgate:overrides          hash  subject -> storage.Override JSON
//	pullgate:tag:<key>          string  storage.TagRecord JSON
const (
	redisPrefix       = "pullgate:"
	redisOverridesKey = redisPrefix + "overrides"
)

func redisVerdictsKey(d digest.Digest) string { return redisPrefix + "verdicts:" + string(d) }
func redisTagKey(key string) string           { return redisPrefix + "tag:" + key }
func redisLinksKey(d digest.Digest) string    { return redisPrefix + "links:" + string(d) }
func redisRolesKey(d digest.Digest) string    { return redisPrefix + "roles:" + string(d) }

// linkScript adds a repository to a digest's set unless the set is full:
// the check and the add are one step, so replicas cannot pass the bound
// together. It returns 1 when the repository is (now) in the set, 0 when
// the set is full.
var linkScript = goredis.NewScript(`
if redis.call("SISMEMBER", KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call("SCARD", KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call("SADD", KEYS[1], ARGV[1])
return 1`)

// Store is the shared verdict store for several replicas.
type Store struct {
	client *goredis.Client
	addr   string // URL without credentials, for messages

	subscribe sync.Once
	pubsub    *goredis.PubSub // once a lease release is watched
	released  kit.Watchers
}

var (
	_ storage.Store  = (*Store)(nil)
	_ storage.Locker = (*Store)(nil)
)

// Open connects to the redis:// (or rediss://, unix://) URL and pings
// it. The URL's password never appears in errors.
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: do not wrap it.
		return nil, fmt.Errorf("open redis verdict store: %w: malformed URL", storage.ErrInvalid)
	}
	shown := u.Redacted()
	opts, err := goredis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("open redis verdict store %s: %w: %w", shown, storage.ErrInvalid, err)
	}
	// Short timeouts: a pull waiting on a dead Redis must fail, not hang.
	opts.DialTimeout = 3 * time.Second
	opts.ReadTimeout = 3 * time.Second
	opts.WriteTimeout = 3 * time.Second
	client := goredis.NewClient(opts)
	s := &Store{client: client, addr: shown}
	if err := s.Ping(ctx); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("open redis verdict store: %w", err)
	}
	return s, nil
}

// Kind returns "redis".
func (s *Store) Kind() string { return "redis" }

// Close closes the connection pool. Closing twice is harmless.
func (s *Store) Close() error {
	s.closeSubscription()
	if err := s.client.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
		return fmt.Errorf("close redis %s: %w", s.addr, err)
	}
	return nil
}

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis %s: %w", s.addr, err)
	}
	return nil
}

func (s *Store) Verdict(ctx context.Context, dgst digest.Digest, rulesetID string, c storage.Context) (storage.Verdict, error) {
	if err := kit.ValidateLookup(dgst, rulesetID, c); err != nil {
		return storage.Verdict{}, fmt.Errorf("get verdict %w", err)
	}
	raw, err := s.client.HGet(ctx, redisVerdictsKey(dgst), kit.VerdictField(rulesetID, c)).Bytes()
	if err != nil {
		return storage.Verdict{}, fmt.Errorf("get verdict %s ruleset %s context %s: %w", dgst, rulesetID, c, s.wrap(err))
	}
	v, err := kit.DecodeVerdictIn(raw, dgst, c)
	if err != nil {
		return storage.Verdict{}, fmt.Errorf("get verdict %s ruleset %s context %s: %w", dgst, rulesetID, c, err)
	}
	return v, nil
}

func (s *Store) PutVerdict(ctx context.Context, v storage.Verdict) error {
	if err := v.Validate(); err != nil {
		return fmt.Errorf("put verdict: %w", err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put verdict %s: %w", v.Digest, err)
	}
	if err := s.client.HSet(ctx, redisVerdictsKey(v.Digest), kit.VerdictField(v.RulesetID, v.Context), raw).Err(); err != nil {
		return fmt.Errorf("put verdict %s ruleset %s context %s: %w", v.Digest, v.RulesetID, v.Context, s.wrap(err))
	}
	return nil
}

func (s *Store) Verdicts(ctx context.Context, dgst digest.Digest) ([]storage.Verdict, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return nil, fmt.Errorf("list verdicts %q: %w: %w", dgst, storage.ErrInvalid, err)
	}
	all, err := s.client.HGetAll(ctx, redisVerdictsKey(dgst)).Result()
	if err != nil {
		return nil, fmt.Errorf("list verdicts %s: %w", dgst, s.wrap(err))
	}
	vs := make([]storage.Verdict, 0, len(all))
	for _, raw := range all {
		v, err := kit.DecodeVerdict([]byte(raw), dgst)
		if err != nil {
			return nil, fmt.Errorf("list verdicts %s: %w", dgst, err)
		}
		vs = append(vs, v)
	}
	kit.SortVerdicts(vs)
	return vs, nil
}

func (s *Store) PutLink(ctx context.Context, repo string, dgst digest.Digest, roles ...storage.Context) error {
	if err := kit.ValidateLink(repo, dgst, roles); err != nil {
		return fmt.Errorf("put link: %w", err)
	}
	added, err := linkScript.Run(ctx, s.client, []string{redisLinksKey(dgst)}, repo, storage.MaxLinks).Int()
	if err != nil {
		return fmt.Errorf("link %s to %s: %w", repo, dgst, s.wrap(err))
	}
	if added == 0 {
		return fmt.Errorf("link %s to %s: %w: %d repositories already carry it", repo, dgst, storage.ErrLimit, storage.MaxLinks)
	}
	if len(roles) == 0 {
		return nil
	}
	members := make([]any, len(roles))
	for i, c := range roles {
		members[i] = string(c)
	}
	if err := s.client.SAdd(ctx, redisRolesKey(dgst), members...).Err(); err != nil {
		return fmt.Errorf("record roles of %s: %w", dgst, s.wrap(err))
	}
	return nil
}

func (s *Store) Links(ctx context.Context, dgst digest.Digest) (storage.Links, error) {
	if err := dcheck.Validate(dgst); err != nil {
		return storage.Links{}, fmt.Errorf("get links %q: %w: %w", dgst, storage.ErrInvalid, err)
	}
	var repos, roles *goredis.StringSliceCmd
	_, err := s.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		repos = p.SMembers(ctx, redisLinksKey(dgst))
		roles = p.SMembers(ctx, redisRolesKey(dgst))
		return nil
	})
	if err != nil {
		return storage.Links{}, fmt.Errorf("get links %s: %w", dgst, s.wrap(err))
	}
	l := storage.Links{Repos: repos.Val(), Roles: make([]storage.Context, 0, len(roles.Val()))}
	if l.Repos == nil {
		l.Repos = []string{}
	}
	for _, c := range roles.Val() {
		l.Roles = append(l.Roles, storage.Context(c))
	}
	kit.SortLinks(&l)
	return l, nil
}

func (s *Store) Override(ctx context.Context, subject string) (storage.Override, error) {
	if err := storage.ValidateSubject(subject); err != nil {
		return storage.Override{}, fmt.Errorf("get override: %w", err)
	}
	raw, err := s.client.HGet(ctx, redisOverridesKey, subject).Bytes()
	if err != nil {
		return storage.Override{}, fmt.Errorf("get override %s: %w", subject, s.wrap(err))
	}
	o, err := storage.DecodeOverride(raw)
	if err != nil {
		return storage.Override{}, fmt.Errorf("get override %s: %w", subject, err)
	}
	return o, nil
}

func (s *Store) PutOverride(ctx context.Context, o storage.Override) error {
	if err := o.Validate(); err != nil {
		return fmt.Errorf("put override: %w", err)
	}
	raw, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("put override %s: %w", o.Subject, err)
	}
	if err := s.client.HSet(ctx, redisOverridesKey, o.Subject, raw).Err(); err != nil {
		return fmt.Errorf("put override %s: %w", o.Subject, s.wrap(err))
	}
	return nil
}

func (s *Store) DeleteOverride(ctx context.Context, subject string) error {
	if err := storage.ValidateSubject(subject); err != nil {
		return fmt.Errorf("delete override: %w", err)
	}
	n, err := s.client.HDel(ctx, redisOverridesKey, subject).Result()
	if err != nil {
		return fmt.Errorf("delete override %s: %w", subject, s.wrap(err))
	}
	if n == 0 {
		return fmt.Errorf("delete override %s: %w", subject, storage.ErrNotFound)
	}
	return nil
}

func (s *Store) Overrides(ctx context.Context) ([]storage.Override, error) {
	all, err := s.client.HGetAll(ctx, redisOverridesKey).Result()
	if err != nil {
		return nil, fmt.Errorf("list overrides: %w", s.wrap(err))
	}
	out := make([]storage.Override, 0, len(all))
	for subject, raw := range all {
		o, err := storage.DecodeOverride([]byte(raw))
		if err != nil {
			return nil, fmt.Errorf("list overrides: %s: %w", subject, err)
		}
		out = append(out, o)
	}
	kit.SortOverrides(out)
	return out, nil
}

func (s *Store) Tag(ctx context.Context, key string) (storage.TagRecord, error) {
	if err := kit.ValidateTagKey(key); err != nil {
		return storage.TagRecord{}, fmt.Errorf("get tag: %w", err)
	}
	raw, err := s.client.Get(ctx, redisTagKey(key)).Bytes()
	if err != nil {
		return storage.TagRecord{}, fmt.Errorf("get tag %s: %w", key, s.wrap(err))
	}
	var t storage.TagRecord
	if err := json.Unmarshal(raw, &t); err != nil {
		return storage.TagRecord{}, fmt.Errorf("get tag %s: decode: %w", key, err)
	}
	return t, nil
}

func (s *Store) PutTag(ctx context.Context, key string, t storage.TagRecord) error {
	if err := kit.ValidateTagKey(key); err != nil {
		return fmt.Errorf("put tag: %w", err)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("put tag %s: %w", key, err)
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put tag %s: %w", key, err)
	}
	if err := s.client.Set(ctx, redisTagKey(key), raw, 0).Err(); err != nil {
		return fmt.Errorf("put tag %s: %w", key, s.wrap(err))
	}
	return nil
}

// wrap turns goredis.Nil into storage.ErrNotFound and names the server in every
// other error, so an outage reads as one.
func (s *Store) wrap(err error) error {
	if errors.Is(err, goredis.Nil) {
		return storage.ErrNotFound
	}
	return fmt.Errorf("redis %s: %w", s.addr, err)
}
