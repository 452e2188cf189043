package deps
import (
 _ "github.com/go-chi/chi/v5"
 _ "github.com/distribution/distribution/v3/registry/storage"
 _ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
 _ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
 _ "github.com/distribution/distribution/v3/registry/api/errcode"
 _ "github.com/distribution/distribution/v3/manifest/schema2"
 _ "github.com/distribution/distribution/v3/manifest/ocischema"
 _ "github.com/distribution/distribution/v3/manifest/manifestlist"
 _ "github.com/distribution/reference"
 _ "github.com/opencontainers/go-digest"
 _ "github.com/opencontainers/image-spec/specs-go/v1"
 _ "oras.land/oras-go/v2/registry/remote/auth"
 _ "github.com/hillu/go-yara/v4"
 _ "github.com/redis/go-redis/v9"
 _ "go.etcd.io/bbolt"
 _ "github.com/klauspost/compress/zstd"
 _ "github.com/klauspost/compress/gzip"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "golang.org/x/sync/singleflight"
 _ "gopkg.in/yaml.v3"
)
import (
 _ "github.com/distribution/distribution/v3/registry/handlers"
 _ "github.com/distribution/distribution/v3/configuration"
 _ "github.com/distribution/distribution/v3/registry/auth/token"
)
