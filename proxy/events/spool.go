package events

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Spool files: one per shutdown, JSON lines of alerts. A starting process
// claims each by renaming it (only one rename of a file succeeds, so two
// replicas starting together do not both send it), then reads and removes
// it.
const (
	spoolPrefix  = "webhook-unsent-"
	spoolClaimed = ".claimed"
)

// spool writes the alerts to a new file in SpoolDir, whole or not at all.
func (w *Webhook) spool(alerts []AlertBody) error {
	if err := os.MkdirAll(w.opts.SpoolDir, 0o700); err != nil {
		return err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, p := range alerts {
		if err := enc.Encode(p); err != nil {
			return err
		}
	}
	name := filepath.Join(w.opts.SpoolDir, spoolPrefix+newID()+".jsonl")
	tmp, err := os.CreateTemp(w.opts.SpoolDir, ".webhook-spool-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

// unspool claims, reads and removes the spool files in SpoolDir. A file
// that cannot be read is left claimed, for an operator to look at.
func (w *Webhook) unspool() ([]AlertBody, error) {
	names, err := filepath.Glob(filepath.Join(w.opts.SpoolDir, spoolPrefix+"*.jsonl"))
	if err != nil {
		return nil, err
	}
	var out []AlertBody
	var errs []error
	for _, name := range names {
		claimed := name + spoolClaimed + "-" + newID()
		if err := os.Rename(name, claimed); err != nil {
			continue // another process took it
		}
		alerts, err := readSpool(claimed)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", claimed, err))
			continue
		}
		out = append(out, alerts...)
		_ = os.Remove(claimed)
	}
	return out, errors.Join(errs...)
}

func readSpool(path string) ([]AlertBody, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AlertBody
	dec := json.NewDecoder(io.LimitReader(f, 64<<20))
	for {
		var p AlertBody
		if err := dec.Decode(&p); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
