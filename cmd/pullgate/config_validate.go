package main

import (
	"errors"
	"fmt"
	"sort"

	"github.com/pullgate/pullgate/proxy/gate"
)

func (c *Config) validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen is empty"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if len(c.Upstreams) == 0 {
		errs = append(errs, errors.New("no upstreams"))
	}
	names := make([]string, 0, len(c.Upstreams))
	for name := range c.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if c.Upstreams[name].URL == "" {
			errs = append(errs, fmt.Errorf("upstream %s has no url", name))
		}
		if _, err := c.Upstreams[name].allowNetworks(); err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: %w", name, err))
		}
	}
	errs = append(errs, c.Storage.validate(), c.Serve.validate(), c.Gate.validateModes())
	if c.MaxStoreBytes < 0 {
		errs = append(errs, errors.New("max_store_bytes is negative"))
	}
	if c.Workers < 0 {
		errs = append(errs, errors.New("workers is negative"))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("tls needs both cert and key"))
	}
	errs = append(errs, c.Gateway.validate(), c.Warm.validate(), validatePlatforms(c.Platforms), gate.ValidatePolicy(c.Policy), c.Decision.policy().Validate(), c.Admin.validate())
	return errors.Join(errs...)
}

func (c GateConfig) validateModes() error {
	var errs []error
	check := func(what, mode string) {
		if mode != "hold" && mode != "stream" {
			errs = append(errs, fmt.Errorf("gate: %s is %q; want hold or stream", what, mode))
		}
	}
	check("mode", c.Mode)
	for prefix, mode := range c.AgentModes {
		check(fmt.Sprintf("agent_modes[%q]", prefix), mode)
	}
	return errors.Join(errs...)
}

func (c ServeConfig) validate() error {
	if c.MaxBlobStreams <= 0 || c.BlobStreamWait <= 0 || c.BlobStreamRetryAfter <= 0 || c.BlobWriteTimeout <= 0 || c.ReapUploadsEvery <= 0 {
		return errors.New("serve: max_blob_streams, blob_stream_wait, blob_stream_retry_after, blob_write_timeout and reap_uploads_every must be positive")
	}
	return nil
}

func (c StorageConfig) validate() error {
	switch c.Driver {
	case "filesystem":
		return nil
	case "s3":
		if c.S3.Bucket == "" || c.S3.Region == "" {
			return errors.New("storage.s3 needs bucket and region")
		}
		return nil
	}
	return fmt.Errorf("storage.driver %q is not filesystem or s3", c.Driver)
}
