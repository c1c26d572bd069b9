package testregistry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// service is the token service name the registry advertises and expects.
const service = "testregistry"

// tokenServer implements the Docker token flow
// (https://distribution.github.io/distribution/spec/auth/token/) on its own
// listener. Its realm says localhost:PORT rather than 127.0.0.1:PORT because
// go-containerregistry refuses a loopback IP literal realm on another
// host:port (an SSRF guard) but accepts a host name, as with Docker Hub's
// separate auth.docker.io.
type tokenServer struct {
	username string
	password string
	ttl      time.Duration
	realm    string
	srv      *http.Server

	mu       sync.Mutex
	tokens   map[string]grant
	requests int
}

type grant struct {
	// resource ("repository:library/alpine") -> granted actions
	scopes  map[string]map[string]bool
	expires time.Time
}

func startTokenServer(cfg config, logger *log.Logger) (*tokenServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for token server: %w", err)
	}
	s := &tokenServer{
		username: cfg.username,
		password: cfg.password,
		ttl:      cfg.tokenTTL,
		realm:    fmt.Sprintf("http://localhost:%d/token", ln.Addr().(*net.TCPAddr).Port),
		tokens:   map[string]grant{},
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serveToken),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          logger,
	}
	go s.srv.Serve(ln) //nolint:errcheck // ErrServerClosed on close is the normal end.
	return s, nil
}

func (s *tokenServer) close() { s.srv.Close() }

func (s *tokenServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func (s *tokenServer) resetCount() {
	s.mu.Lock()
	s.requests = 0
	s.mu.Unlock()
}

func (s *tokenServer) serveToken(w http.ResponseWriter, req *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()

	if req.Method != http.MethodGet || req.URL.Path != "/token" {
		writeError(w, http.StatusNotFound, "UNSUPPORTED", "token server answers GET /token only")
		return
	}
	if s.username != "" {
		u, p, ok := req.BasicAuth()
		if !ok || u != s.username || p != s.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="testregistry"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
			return
		}
	}

	g := grant{scopes: map[string]map[string]bool{}, expires: time.Now().Add(s.ttl)}
	// Clients may repeat scope and may also pack several into one value
	// separated by spaces; accept both.
	for _, param := range req.URL.Query()["scope"] {
		for _, scope := range strings.Fields(param) {
			resource, actions, ok := splitScope(scope)
			if !ok {
				continue
			}
			if g.scopes[resource] == nil {
				g.scopes[resource] = map[string]bool{}
			}
			for _, a := range strings.Split(actions, ",") {
				g.scopes[resource][a] = true
			}
		}
	}
	raw := make([]byte, 24)
	rand.Read(raw) //nolint:errcheck // crypto/rand.Read never fails since Go 1.24.
	token := hex.EncodeToString(raw)
	issued := time.Now().UTC()
	s.mu.Lock()
	s.tokens[token] = g
	s.mu.Unlock()

	body, _ := json.Marshal(map[string]any{
		"token":        token,
		"access_token": token,
		"expires_in":   max(1, int(math.Ceil(s.ttl.Seconds()))),
		"issued_at":    issued.Format(time.RFC3339),
	})
	w.Header().Set("Content-Type", "application/json")
	w.Write(body) //nolint:errcheck // the client may be gone; nothing to do.
}

// splitScope splits "repository:name:pull,push" at the first and last colon;
// names cannot contain colons but a resource type could be followed by one.
func splitScope(scope string) (resource, actions string, ok bool) {
	first := strings.Index(scope, ":")
	last := strings.LastIndex(scope, ":")
	if first < 0 || last == first {
		return "", "", false
	}
	return scope[:last], scope[last+1:], true
}

// authorize lets a request through if it carries a live token covering what it
// does; otherwise it answers 401 with a challenge naming the scope to ask for,
// which is how clients learn where and what to request.
func (s *tokenServer) authorize(w http.ResponseWriter, req *http.Request) bool {
	resource, action := requiredScope(req)
	token, hasBearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	problem := ""
	if hasBearer {
		if problem = s.check(token, resource, action); problem == "" {
			return true
		}
	}
	challenge := fmt.Sprintf(`Bearer realm=%q,service=%q`, s.realm, service)
	if resource != "" {
		wanted := action
		if action == "push" || action == "delete" {
			wanted = "pull," + action
		}
		challenge += fmt.Sprintf(`,scope="%s:%s"`, resource, wanted)
	}
	if problem != "" {
		// RFC 6750 §3.1: tell a client holding a token why it was not enough.
		challenge += fmt.Sprintf(`,error=%q`, problem)
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

// check returns "" if token is live and grants action on resource, else the
// RFC 6750 error code to put in the challenge.
func (s *tokenServer) check(token, resource, action string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.tokens[token]
	if !ok {
		return "invalid_token"
	}
	if time.Now().After(g.expires) {
		delete(s.tokens, token)
		return "invalid_token"
	}
	if resource == "" {
		return ""
	}
	acts := g.scopes[resource]
	if acts["*"] || acts[action] || (action == "delete" && acts["push"]) {
		return ""
	}
	return "insufficient_scope"
}

// requiredScope maps a request to the resource and action a token must grant.
// An empty resource (the /v2/ ping, unknown paths) needs only a live token.
func requiredScope(req *http.Request) (resource, action string) {
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		action = "pull"
	case http.MethodDelete:
		action = "delete"
	default:
		action = "push"
	}
	p := strings.TrimSuffix(req.URL.Path, "/")
	if p == "/v2/_catalog" {
		return "registry:catalog", "*"
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return "", action
	}
	// Parse from the end, like ggcr's router, because repository names may
	// themselves contain "blobs" or "manifests" segments.
	elems := strings.Split(rest, "/")
	n := len(elems)
	switch {
	case n >= 4 && elems[n-3] == "blobs" && elems[n-2] == "uploads":
		return "repository:" + strings.Join(elems[:n-3], "/"), action
	case n >= 3 && (elems[n-2] == "blobs" || elems[n-2] == "manifests" ||
		elems[n-2] == "tags" || elems[n-2] == "referrers"):
		return "repository:" + strings.Join(elems[:n-2], "/"), action
	}
	return "", action
}
