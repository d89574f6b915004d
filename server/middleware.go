package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// statusWriter records the status code and whether anything was written.
// Unwrap lets http.ResponseController reach the real writer (Flush).
type statusWriter struct {
	http.ResponseWriter
	status  int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.status = code
		w.written = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if !w.written {
		w.status = http.StatusOK
		w.written = true
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe counts and logs every request by route pattern and status.
func (s *server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			// A handler aborted with http.ErrAbortHandler still counts.
			route := r.Pattern
			if route == "" || route == "/" {
				route = "other"
			}
			code := sw.status
			if !sw.written {
				code = http.StatusOK
			}
			s.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			s.log.Debug("request", "method", r.Method, "path", r.URL.Path,
				"status", code, "duration", time.Since(start))
		}()
		next.ServeHTTP(sw, r)
	})
}

// recoverer turns a panicking handler into a logged 500 so that no request
// can take the daemon down. http.ErrAbortHandler passes through: it is the
// deliberate way to cut a stream (see trajectory).
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw, ok := w.(*statusWriter)
		if !ok {
			sw = &statusWriter{ResponseWriter: w}
		}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("server: handler panic", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if sw.written {
				// Part of an answer is out: the client must not take it
				// for a complete one.
				panic(http.ErrAbortHandler)
			}
			writeError(sw, http.StatusInternalServerError, "internal error (see the daemon log)")
		}()
		next.ServeHTTP(sw, r)
	})
}

// bearerAuth requires "Authorization: Bearer <token>". The comparison is in
// constant time over SHA-256 digests, so neither the content nor the length
// of the token leaks through timing.
func bearerAuth(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		got, ok := strings.CutPrefix(h, "Bearer ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(got)))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="replayd"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (Authorization: Bearer <token>)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// probeMethods are the methods the catch-all tries when a path matched no
// pattern for the request's method.
var probeMethods = []string{http.MethodGet, http.MethodPost, http.MethodDelete}

// notFound answers requests no route matched: 405 with an Allow header when
// the path exists for another method, 404 otherwise, both in JSON.
func (s *server) notFound(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range probeMethods {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
				allow = append(allow, m)
				if m == http.MethodGet {
					allow = append(allow, http.MethodHead)
				}
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, http.StatusMethodNotAllowed,
				fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path))
	})
}
