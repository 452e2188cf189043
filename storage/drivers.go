package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // registers "filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"   // registers "inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"     // registers "s3aws" and "s3"
)

// BlobsConfig names a storage driver of distribution's factory and its
// parameters, as distribution's own configuration names them.
type BlobsConfig struct {
	// Driver is "filesystem", "inmemory" or "s3aws" ("s3" is the same).
	Driver string
	// Params are the driver's parameters: "rootdirectory" for the
	// filesystem; "bucket", "region", "regionendpoint", "accesskey",
	// "secretkey", "secure", "forcepathstyle", "rootdirectory" for S3.
	Params map[string]any
}

// OpenBlobs opens the blob store on the driver c names, through
// distribution's driver factory. A filesystem store needs its root
// directory named (the driver's own default is a system path). A secret
// key among the parameters never appears in an error.
func OpenBlobs(ctx context.Context, c BlobsConfig) (*Blobs, error) {
	if c.Driver == "filesystem" {
		if root, _ := c.Params["rootdirectory"].(string); root == "" {
			return nil, fmt.Errorf("filesystem blob store: %w: empty root directory", ErrInvalid)
		}
	}
	d, err := factory.Create(ctx, c.Driver, c.Params)
	if err != nil {
		secret, _ := c.Params["secretkey"].(string)
		return nil, fmt.Errorf("open %s storage driver: %w", c.Driver, redactSecret(err, secret))
	}
	return NewBlobs(ctx, d)
}

// NewFilesystemBlobs returns a store rooted at the directory root, the
// single-node default.
func NewFilesystemBlobs(ctx context.Context, root string) (*Blobs, error) {
	return OpenBlobs(ctx, BlobsConfig{Driver: "filesystem", Params: map[string]any{"rootdirectory": root}})
}

// NewInMemoryBlobs returns a store that lives in process memory, for tests.
func NewInMemoryBlobs(ctx context.Context) (*Blobs, error) {
	return OpenBlobs(ctx, BlobsConfig{Driver: "inmemory"})
}

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

// Blobs returns the driver configuration for the bucket, or an error
// wrapping ErrInvalid without a bucket and a region.
func (c S3Config) Blobs() (BlobsConfig, error) {
	if c.Bucket == "" || c.Region == "" {
		return BlobsConfig{}, fmt.Errorf("s3 store: %w: bucket and region are required", ErrInvalid)
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
	return BlobsConfig{Driver: "s3aws", Params: params}, nil
}

// NewS3Blobs opens the store on an S3 bucket through distribution's s3-aws
// driver. The secret key never appears in an error.
func NewS3Blobs(ctx context.Context, c S3Config) (*Blobs, error) {
	bc, err := c.Blobs()
	if err != nil {
		return nil, err
	}
	b, err := OpenBlobs(ctx, bc)
	if err != nil {
		return nil, fmt.Errorf("s3 store on bucket %s: %w", c.Bucket, err)
	}
	return b, nil
}

func redactSecret(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "[redacted]"))
}
