package testregistry

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
)

const (
	// Service is the service name in the registry's Bearer challenge and the
	// audience of the tokens it accepts, like "registry.docker.io".
	Service = "registry.testregistry.local"
	// Issuer is the issuer of the tokens, like "auth.docker.io".
	Issuer = "auth.testregistry.local"

	tokenTTL = 5 * time.Minute
)

// tokenIssuer signs Docker registry tokens
// (https://distribution.github.io/distribution/spec/auth/jwt/) that
// distribution's token access controller accepts: ES256, with the key's JWK
// thumbprint as "kid", which the controller derives from the root
// certificate bundle.
type tokenIssuer struct {
	signer   jose.Signer
	certPath string
}

func newTokenIssuer(dir string) (*tokenIssuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate token signing key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: Issuer},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create token signing certificate: %w", err)
	}
	certPath := filepath.Join(dir, "token-root.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("write token root certificate: %w", err)
	}
	kid := token.GetJWKThumbprint(crypto.PublicKey(key.Public()))
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.ES256,
		Key:       jose.JSONWebKey{Key: key, KeyID: kid},
	}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("create token signer: %w", err)
	}
	return &tokenIssuer{signer: signer, certPath: certPath}, nil
}

type accessClaim struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

type claims struct {
	Issuer     string         `json:"iss"`
	Subject    string         `json:"sub"`
	Audience   string         `json:"aud"`
	Expiration int64          `json:"exp"`
	NotBefore  int64          `json:"nbf"`
	IssuedAt   int64          `json:"iat"`
	JWTID      string         `json:"jti"`
	Access     []*accessClaim `json:"access"`
}

// issue signs a token for subject granting the requested scopes
// ("repository:library/alpine:pull"). Anonymous subjects get pull only, as on
// Docker Hub; a push (or anything else) needs credentials.
func (ti *tokenIssuer) issue(subject string, scopes []string) (string, error) {
	now := time.Now()
	c := claims{
		Issuer:     Issuer,
		Subject:    subject,
		Audience:   Service,
		Expiration: now.Add(tokenTTL).Unix(),
		NotBefore:  now.Add(-time.Minute).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      rand.Text(),
		Access:     []*accessClaim{},
	}
	for _, s := range scopes {
		for _, one := range strings.Fields(s) {
			typ, rest, ok := strings.Cut(one, ":")
			if !ok {
				continue
			}
			i := strings.LastIndex(rest, ":")
			if i < 0 {
				continue
			}
			name, actions := rest[:i], strings.Split(rest[i+1:], ",")
			var granted []string
			for _, a := range actions {
				if a == "pull" || subject != "" {
					granted = append(granted, a)
				}
			}
			c.Access = append(c.Access, &accessClaim{Type: typ, Name: name, Actions: granted})
		}
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sig, err := ti.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return sig.CompactSerialize()
}

// serveToken is the token endpoint, GET (basic auth) and POST (OAuth2
// password and refresh_token grants) like auth.docker.io.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	var user, pass string
	var hasCreds bool
	var scopes []string
	switch req.Method {
	case http.MethodGet:
		user, pass, hasCreds = req.BasicAuth()
		scopes = req.URL.Query()["scope"]
	case http.MethodPost:
		if err := req.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch req.PostForm.Get("grant_type") {
		case "password":
			user, pass, hasCreds = req.PostForm.Get("username"), req.PostForm.Get("password"), true
		case "refresh_token":
			user, pass, hasCreds = r.user, req.PostForm.Get("refresh_token"), true
		default:
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		scopes = strings.Fields(req.PostForm.Get("scope"))
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}

	r.mu.Lock()
	r.tokenRequests = append(r.tokenRequests, TokenRequest{User: user, Scopes: scopes})
	r.mu.Unlock()

	switch {
	case hasCreds && (r.user == "" || user != r.user || pass != r.pass) && r.echoAuth:
		writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "bad credentials: "+req.Header.Get("Authorization")+" "+pass)
		return
	case hasCreds && (r.user == "" || user != r.user || pass != r.pass):
		http.Error(w, `{"details":"incorrect username or password"}`, http.StatusUnauthorized)
		return
	case !hasCreds && r.user != "":
		w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
		http.Error(w, `{"details":"credentials required"}`, http.StatusUnauthorized)
		return
	}

	tok, err := r.tokens.issue(user, scopes)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body := map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   int(tokenTTL.Seconds()),
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	}
	if req.Method == http.MethodPost {
		body["refresh_token"] = pass
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}
