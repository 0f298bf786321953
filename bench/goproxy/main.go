// A minimal authenticating reverse proxy: the per-request hot path of oauth2-proxy.
//
// It decrypts an AES-GCM session cookie (base64url(nonce || ciphertext), holding a
// JSON session with an "access_token"), sets "Authorization: Bearer <token>" and hands
// the request to httputil.ReverseProxy. /api/<path> goes to <upstream>/<path>. A
// missing or bad cookie is 401. Standard library only.
//
// Environment: BENCH_SESSION_KEY, the 32-byte AES key in hex.
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// bufferPool lends ReverseProxy its copy buffers (httputil.BufferPool).
type bufferPool struct{ pool sync.Pool }

func (b *bufferPool) Get() []byte {
	if buffer, ok := b.pool.Get().(*[]byte); ok {
		return *buffer
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buffer []byte) { b.pool.Put(&buffer) }

type session struct {
	AccessToken string `json:"access_token"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to listen on")
	upstream := flag.String("upstream", "", "base URL of the API, e.g. http://127.0.0.1:9000/v2")
	cookieName := flag.String("cookie", "session", "name of the session cookie")
	flag.Parse()

	key, err := hex.DecodeString(os.Getenv("BENCH_SESSION_KEY"))
	if err != nil || len(key) != 32 {
		log.Fatal("BENCH_SESSION_KEY must be 32 bytes in hex")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		log.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		log.Fatal(err)
	}
	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		log.Fatal("-upstream must be an absolute URL")
	}

	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Bodies pass as the upstream sent them, as zoom-proxy passes them: no gzip
		// asked for, nothing decompressed.
		DisableCompression: true,
		// At least one idle connection per client connection, even at 1,000: none is
		// closed and redialled between requests.
		MaxIdleConns:        4096,
		MaxIdleConnsPerHost: 4096,
		IdleConnTimeout:     90 * time.Second,
	}
	// Errors only, as zoom-proxy logs at "warning" in the benchmark.
	proxy.ErrorLog = log.New(os.Stderr, "", 0)
	// Without a pool, each response allocates a fresh 32 KiB copy buffer, which the
	// garbage collector then has to reclaim: most of a small GET's cost.
	proxy.BufferPool = &bufferPool{}

	unauthorized := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthenticated"}`))
	}

	handler := func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			http.NotFound(w, r)
			return
		}
		cookie, err := r.Cookie(*cookieName)
		if err != nil {
			unauthorized(w)
			return
		}
		sealed, err := base64.RawURLEncoding.DecodeString(cookie.Value)
		if err != nil || len(sealed) < aead.NonceSize() {
			unauthorized(w)
			return
		}
		nonce, ciphertext := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
		plain, err := aead.Open(nil, nonce, ciphertext, nil)
		if err != nil {
			unauthorized(w)
			return
		}
		var s session
		if json.Unmarshal(plain, &s) != nil || s.AccessToken == "" {
			unauthorized(w)
			return
		}
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/api")
		r.URL.RawPath = ""
		r.Header.Del("Cookie")
		r.Header.Set("Authorization", "Bearer "+s.AccessToken)
		proxy.ServeHTTP(w, r)
	}

	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(listener, http.HandlerFunc(handler)))
}
