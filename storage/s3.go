package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws" // registers "s3aws"
)

// S3Config locates a bucket on AWS S3 or on any S3-compatible service, for
// replicas that share one store.
type S3Config struct {
	Bucket        string
	Region        string // required by the protocol; any value for most S3-compatible services
	Endpoint      string // e.g. "https://minio.internal:9000"; empty: AWS
	AccessKey     string // empty: the AWS default chain (environment, instance role)
	SecretKey     string
	RootDirectory string // a prefix inside the bucket
	Insecure      bool   // plain http to Endpoint
	PathStyle     bool   // bucket in the path, as most S3-compatible services need
}

// NewS3Blobs opens the store on an S3 bucket through distribution's s3-aws
// driver. The secret key never appears in an error.
func NewS3Blobs(ctx context.Context, c S3Config) (*Blobs, error) {
	if c.Bucket == "" || c.Region == "" {
		return nil, fmt.Errorf("s3 store: %w: bucket and region are required", ErrInvalid)
	}
	params := map[string]any{
		"bucket":         c.Bucket,
		"region":         c.Region,
		"secure":         !c.Insecure,
		"forcepathstyle": c.PathStyle,
		"rootdirectory":  c.RootDirectory,
	}
	if c.Endpoint != "" {
		params["regionendpoint"] = c.Endpoint
	}
	if c.AccessKey != "" {
		params["accesskey"] = c.AccessKey
		params["secretkey"] = c.SecretKey
	}
	d, err := factory.Create(ctx, "s3aws", params)
	if err != nil {
		return nil, fmt.Errorf("s3 store on bucket %s: %w", c.Bucket, redactSecret(err, c.SecretKey))
	}
	return NewBlobs(ctx, d)
}

func redactSecret(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
}
