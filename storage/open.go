package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Config says what Open opens.
type Config struct {
	// Backend names the verdict store backend: "embedded" (a bbolt file,
	// for one node) or "redis" (shared by replicas). Backends register
	// themselves (storage/bolt, storage/redis); the program imports them.
	Backend string
	// Path is the embedded store's file.
	Path string
	// RedisURL is the shared store's redis://, rediss:// or unix:// URL.
	// Its password never appears in an error.
	RedisURL string
	// AuditRetention bounds the pull records of a shared audit log
	// (0: DefaultAuditRetention).
	AuditRetention int64
	// AuditFile is the JSON-lines audit log kept on this node, rotated at
	// AuditFileBytes (<= 0: never) keeping AuditFileKeep old files. Empty:
	// no file.
	AuditFile      string
	AuditFileBytes int64
	AuditFileKeep  int
	// Blobs is the blob and manifest store; an empty Driver opens none.
	Blobs BlobsConfig
}

// Backend is what a verdict store backend gives Open. Store and Locks are
// required: a backend without a Locker would silently cost replicas their
// de-duplication, so Open refuses it. Bus and Audit are nil when the
// backend has none; Open then says so in Stores.Without.
type Backend struct {
	Store Store
	Locks Locker
	Bus   EventBus
	// Audit is the backend's shared audit log, used beside this node's
	// file. It shares the store's connections: closing Store closes it.
	Audit AuditLog
}

// Opener opens one backend from c.
type Opener func(ctx context.Context, c Config) (Backend, error)

var (
	backendsMu sync.Mutex
	backends   = map[string]Opener{}
)

// Register makes a backend available to Open under name, as
// distribution's storage drivers register with its factory. It panics on
// a nil opener or a name registered twice: both are programming errors.
func Register(name string, open Opener) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if open == nil {
		panic("storage: Register of backend " + name + " with a nil opener")
	}
	if _, dup := backends[name]; dup {
		panic("storage: backend " + name + " registered twice")
	}
	backends[name] = open
}

// Stores is every capability of the storage pullgate runs on, by name. A
// field is nil only where its doc says it may be.
type Stores struct {
	// Verdicts is the backend's store: verdicts and links, and its
	// overrides and tags as well (the same store, seen whole).
	Verdicts Store
	// Overrides and Tags are Verdicts seen as one capability each.
	Overrides OverrideStore
	Tags      TagStore
	// Locks takes ingest leases and watches their release. Never nil.
	Locks Locker
	// Bus carries events between replicas; nil when the backend has none
	// (the embedded store has one process).
	Bus EventBus
	// Audit is the audit log: the backend's shared one first (queries ask
	// it), teed with this node's file. Nil only with neither.
	Audit AuditLog
	// Blobs is the blob and manifest store; nil when none was configured.
	Blobs *Blobs
	// Without names, one line each, what this storage runs without, for
	// the server to say at start-up.
	Without []string

	closers []func() error
}

// Open opens the verdict store backend c names, the audit log and the
// blob store, and returns them as named capabilities. On an error,
// whatever was opened is closed again.
func Open(ctx context.Context, c Config) (*Stores, error) {
	backendsMu.Lock()
	open, ok := backends[c.Backend]
	backendsMu.Unlock()
	if !ok {
		return nil, fmt.Errorf("open storage: %w: no verdict store backend %q (known: %v)", ErrInvalid, c.Backend, Backends())
	}
	b, err := open(ctx, c)
	if err != nil {
		return nil, err // the backend's error names the store and what failed
	}
	st := &Stores{}
	if b.Store != nil {
		st.closers = append(st.closers, b.Store.Close)
	}
	if err := st.adopt(c.Backend, b); err != nil {
		return nil, errors.Join(err, st.Close())
	}
	if err := st.openAudit(c, b.Audit); err != nil {
		return nil, errors.Join(err, st.Close())
	}
	if c.Blobs.Driver != "" {
		if st.Blobs, err = OpenBlobs(ctx, c.Blobs); err != nil {
			return nil, errors.Join(fmt.Errorf("blob store: %w", err), st.Close())
		}
	}
	return st, nil
}

// adopt takes the backend's capabilities, refusing one without a store or
// a locker.
func (st *Stores) adopt(name string, b Backend) error {
	if b.Store == nil || b.Locks == nil {
		return fmt.Errorf("open %s verdict store: %w: the backend gives no store or no locker", name, ErrInvalid)
	}
	st.Verdicts, st.Overrides, st.Tags, st.Locks, st.Bus = b.Store, b.Store, b.Store, b.Locks, b.Bus
	if b.Bus == nil {
		st.Without = append(st.Without, fmt.Sprintf("event bus: the %s store has none, so the live view shows this process's decisions only", name))
	}
	if b.Audit == nil {
		st.Without = append(st.Without, fmt.Sprintf("shared audit log: the %s store has none, so the audit log is this node's file only", name))
	}
	return nil
}

func (st *Stores) openAudit(c Config, shared AuditLog) error {
	var file *FileAuditLog
	if c.AuditFile != "" {
		var err error
		if file, err = OpenFileAuditLog(c.AuditFile); err != nil {
			return err
		}
		file.SetRotation(c.AuditFileBytes, c.AuditFileKeep)
		st.closers = append(st.closers, file.Close)
	}
	switch {
	case shared != nil && file != nil:
		st.Audit = TeeAuditLog{shared, file}
	case shared != nil:
		st.Audit = shared
	case file != nil:
		st.Audit = file
	default:
		st.Without = append(st.Without, "audit log: none configured")
	}
	return nil
}

// Close closes what Open opened, the last opened first. Closing twice is
// harmless.
func (st *Stores) Close() error {
	var errs []error
	for i := len(st.closers) - 1; i >= 0; i-- {
		errs = append(errs, st.closers[i]())
	}
	st.closers = nil
	return errors.Join(errs...)
}

// Backends lists the registered backend names, sorted.
func Backends() []string {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	names := make([]string, 0, len(backends))
	for n := range backends {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
