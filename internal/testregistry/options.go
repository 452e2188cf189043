package testregistry

// Option configures a Registry.
type Option func(*Registry)

// WithCredentials makes the token endpoint require these credentials (basic
// auth on GET, the OAuth2 password grant on POST): anonymous and wrong
// credentials get 401. Without it anonymous pulls are allowed and any
// credentials are refused.
func WithCredentials(user, pass string) Option {
	return func(r *Registry) { r.user, r.pass = user, pass }
}

// WithPullLimit enforces Docker Hub's pull limit: after n manifest GETs
// (HEADs are free) manifest GETs answer 429 TOOMANYREQUESTS. Without it the
// ratelimit headers advertise DefaultPullLimit but nothing is enforced.
func WithPullLimit(n int) Option {
	return func(r *Registry) { r.pullLimit, r.enforceLimit = n, true }
}

// WithEchoingTokenErrors makes the token endpoint, when it refuses
// credentials, echo the Authorization header and the password it was sent
// in its error body, as a careless or hostile realm might. A client must
// not carry that text into its own errors.
func WithEchoingTokenErrors() Option {
	return func(r *Registry) { r.echoAuth = true }
}
