package web

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"

	"github.com/tandemdocs/tandem/internal/collab"
)

// Role is what a token lets its holder do with a document. Each role
// includes the ones below it.
type Role int

const (
	RoleNone  Role = iota
	RoleRead       // receives the text, ops and presence; its submits are refused
	RoleWrite      // edits
	RoleAdmin      // deletes; the admin endpoints (on "*")
)

func (r Role) String() string {
	return [...]string{"none", "read", "write", "admin"}[r]
}

// ParseRole reads "read", "write" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "write":
		return RoleWrite, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q: want read, write or admin", s)
}

// Grant gives a role on documents: ID is "*" (every document), an id, or a
// prefix ending in "*" ("acme-*": a tenant's documents).
type Grant struct {
	ID   string `json:"id"`
	Role string `json:"role"`
}

func (g Grant) matches(doc string) bool {
	switch {
	case g.ID == "*":
		return true
	case strings.HasSuffix(g.ID, "*"):
		return strings.HasPrefix(doc, strings.TrimSuffix(g.ID, "*"))
	}
	return g.ID == doc
}

// Claims are a Tandem token's claims: the registered ones (sub is the user
// id; exp is required), the name and colour others see, and the grants.
type Claims struct {
	jwt.RegisteredClaims
	Name  string  `json:"name,omitempty"`
	Color string  `json:"color,omitempty"`
	Docs  []Grant `json:"docs,omitempty"`
}

// RoleFor returns the highest role the claims grant on doc.
func (c *Claims) RoleFor(doc string) Role { return c.Identity().RoleFor(doc) }

// Identity is the identity the claims describe.
func (c *Claims) Identity() *Identity {
	id := &Identity{User: c.Subject, Name: c.Name, Color: c.Color, Grants: c.Docs}
	if c.ExpiresAt != nil {
		id.Expires = c.ExpiresAt.Time
	}
	return id
}

// Verifier checks tokens: HMAC-SHA256 with any of a list of secrets (the
// first signs; the others are still accepted, for rotation), and/or a
// public key (Ed25519 or RSA) for tokens minted by the user's own identity
// service. Tokens must carry exp and a subject; the algorithm is pinned
// to the key's ("none" and algorithm confusion are refused).
type Verifier struct {
	secrets [][]byte
	public  crypto.PublicKey
	methods []string
}

// NewVerifier builds a verifier from secrets (each at least 32 bytes) and
// an optional PEM public key.
func NewVerifier(secrets []string, publicKeyPEM []byte) (*Verifier, error) {
	v := &Verifier{}
	for _, s := range secrets {
		if len(s) < 32 {
			return nil, errors.New("an auth secret must be at least 32 bytes (openssl rand -hex 32)")
		}
		v.secrets = append(v.secrets, []byte(s))
	}
	if len(v.secrets) > 0 {
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	}
	if len(publicKeyPEM) > 0 {
		block, _ := pem.Decode(publicKeyPEM)
		if block == nil {
			return nil, errors.New("auth public key: not PEM")
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("auth public key: %w", err)
		}
		switch key.(type) {
		case ed25519.PublicKey:
			v.methods = append(v.methods, jwt.SigningMethodEdDSA.Alg())
		case *rsa.PublicKey:
			v.methods = append(v.methods, jwt.SigningMethodRS256.Alg())
		default:
			return nil, fmt.Errorf("auth public key: %T is not Ed25519 or RSA", key)
		}
		v.public = key
	}
	if len(v.methods) == 0 {
		return nil, errors.New("no auth secret and no public key")
	}
	return v, nil
}

// Verify checks a token and returns its claims.
func (v *Verifier) Verify(token string) (*Claims, error) {
	var lastErr error
	keys := make([]any, 0, len(v.secrets)+1)
	for _, s := range v.secrets {
		keys = append(keys, s)
	}
	if v.public != nil {
		keys = append(keys, v.public)
	}
	for _, key := range keys {
		claims := &Claims{}
		_, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
			switch t.Method.(type) {
			case *jwt.SigningMethodHMAC:
				if _, ok := key.([]byte); !ok {
					return nil, errors.New("an HMAC token for a public key")
				}
			default:
				if _, ok := key.([]byte); ok {
					return nil, errors.New("a public-key token for a secret")
				}
			}
			return key, nil
		}, jwt.WithValidMethods(v.methods), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second))
		if err == nil {
			if claims.Subject == "" {
				return nil, errors.New("token without a subject (sub)")
			}
			return claims, nil
		}
		lastErr = err
		if !errors.Is(err, jwt.ErrTokenSignatureInvalid) && !errors.Is(err, jwt.ErrTokenUnverifiable) {
			break // expired, malformed...: another key will not help
		}
	}
	return nil, lastErr
}

// Mint signs claims with secret (HMAC-SHA256): for `tandem token`, scripts
// and tests.
func Mint(secret string, claims Claims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
}

// Identity is who a request comes from: the subject of a token, or
// whoever the host application's Authenticate hook says (its own login).
type Identity struct {
	// User is a stable id: it owns the client's source ids (exactly-once
	// across reconnects), shares per-user limits, and is recorded with
	// each op as its author.
	User string
	// Name and Color are what the other participants see.
	Name, Color string
	// Grants say what the identity may do with which documents, unless an
	// Authorize hook decides.
	Grants []Grant
	// Expires, if set, is when the identity's WebSockets are closed (a
	// token's exp; the client reconnects with a fresh one).
	Expires time.Time
}

// RoleFor returns the highest role the identity's grants give on doc.
func (id *Identity) RoleFor(doc string) Role {
	best := RoleNone
	for _, g := range id.Grants {
		if r, err := ParseRole(g.Role); err == nil && r > best && g.matches(doc) {
			best = r
		}
	}
	return best
}

// AuthenticateFunc tells who makes a request from the host application's
// own sessions (a cookie, a header). It returns nil, nil for a request it
// does not recognise: tokens decide then (Config.Auth), and without a
// verifier the request is refused (401). An error refuses it (401, with
// the error's text). It runs on the request's goroutine, for every REST
// request and every WebSocket upgrade, before any work: keep it fast.
type AuthenticateFunc func(r *http.Request) (*Identity, error)

// AuthorizeFunc decides the role an identity has on a document, in place
// of its grants. It is asked for each document a request touches (each
// document listed, the document a WebSocket opens, a new document's id
// before it is created: grant RoleWrite there to let a user create). An
// error counts as RoleNone, and is logged. It runs on the request's
// goroutine; a WebSocket's role is fixed when it opens.
type AuthorizeFunc func(ctx context.Context, who Identity, doc string) (Role, error)

// principal is who makes a request: an identity (from a token or the
// Authenticate hook), the holder of the server's admin token, or nobody in
// open mode. Where a request comes from grants nothing: behind a reverse
// proxy on the same machine every request comes from loopback.
type principal struct {
	id    *Identity // nil in open mode and for the admin token
	admin bool      // the request carries the server's admin token
	// authorize, if set, decides the identity's roles (Config.Authorize,
	// bound to the request's context).
	authorize func(doc string) Role
}

// key names the principal for per-user limits: the user, or the address
// in open mode.
func (p principal) key(c echo.Context) string {
	if p.id != nil {
		return "user:" + p.id.User
	}
	return "ip:" + c.RealIP()
}

// role is what the principal may do with doc. In open mode everyone may
// read and write; administering (deleting a document) takes the admin
// token, in every mode, or an identity's admin role.
func (p principal) role(doc string) Role {
	switch {
	case p.admin:
		return RoleAdmin
	case p.id == nil:
		return RoleWrite
	case p.authorize != nil:
		return p.authorize(doc)
	}
	return p.id.RoleFor(doc)
}

// tokenCookie carries a token for browsers, which cannot set headers on a
// WebSocket.
const tokenCookie = "tandem_token"

// requestToken finds the token: Authorization: Bearer, the token query
// parameter, or the cookie.
func requestToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		return strings.TrimSpace(strings.TrimPrefix(h, "Bearer "))
	}
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if c, err := r.Cookie(tokenCookie); err == nil {
		return c.Value
	}
	return ""
}

// who authenticates a request: the admin token, the Authenticate hook,
// then a token. In open mode (neither a verifier nor a hook) everyone is
// welcome; otherwise an identity is required (401 without one).
func (s *Server) who(c echo.Context) (principal, error) {
	var p principal
	r := c.Request()
	if s.cfg.AdminToken != "" && tokenMatches(r.Header.Get("Authorization"), s.cfg.AdminToken) {
		p.admin = true
		return p, nil
	}
	if s.cfg.Authenticate != nil {
		id, err := s.cfg.Authenticate(r)
		if err != nil {
			return p, errorf(http.StatusUnauthorized, codeUnauthorized, err.Error())
		}
		if id != nil {
			if id.User == "" {
				return p, errorf(http.StatusUnauthorized, codeUnauthorized, "the application's login gave no user id")
			}
			return s.identified(c, id), nil
		}
	}
	if s.cfg.Auth == nil {
		if s.cfg.Authenticate != nil {
			return p, errorf(http.StatusUnauthorized, codeUnauthorized, "not signed in")
		}
		return p, nil
	}
	tok := requestToken(r)
	if tok == "" {
		return p, errorf(http.StatusUnauthorized, codeUnauthorized, "a token is required (Authorization: Bearer, ?token= or the tandem_token cookie)")
	}
	claims, err := s.cfg.Auth.Verify(tok)
	if err != nil {
		return p, errorf(http.StatusUnauthorized, codeUnauthorized, "invalid token: "+err.Error())
	}
	return s.identified(c, claims.Identity()), nil
}

// identified is the principal of an identity, with the Authorize hook
// bound to the request.
func (s *Server) identified(c echo.Context, id *Identity) principal {
	p := principal{id: id}
	if s.cfg.Authorize != nil {
		ctx, who, log := c.Request().Context(), *id, s.logger(c)
		p.authorize = func(doc string) Role {
			r, err := s.cfg.Authorize(ctx, who, doc)
			if err != nil {
				log.Warn("authorize hook refused", "user", who.User, "doc", doc, "err", err)
				return RoleNone
			}
			return r
		}
	}
	return p
}

// allow authenticates the request and checks it has role on doc.
func (s *Server) allow(c echo.Context, doc string, role Role) (principal, error) {
	p, err := s.who(c)
	if err != nil {
		return p, err
	}
	if p.role(doc) < role {
		return p, errorf(http.StatusForbidden, collab.CodeForbidden, fmt.Sprintf("this needs the %s role on document %s", role, doc))
	}
	return p, nil
}
