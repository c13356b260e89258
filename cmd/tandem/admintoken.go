package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// adminTokenFile is where `tandem serve` keeps the admin token it made
// itself, when it was given none: in its data directory, readable by its
// own user only. Local tools (tandem backup, a Prometheus scrape on the
// same machine) read it there. Being on the machine, not coming from
// loopback, is what grants admin: behind a reverse proxy on the same host
// every request comes from loopback.
const adminTokenFile = "admin-token"

// localAdminToken returns the admin token kept in dataDir, making one the
// first time (32 random bytes, hex, mode 0600).
func localAdminToken(dataDir string) (token, path string, err error) {
	path = filepath.Join(dataDir, adminTokenFile)
	if tok, err := readTokenFile(path); err == nil {
		return tok, path, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", path, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", path, fmt.Errorf("admin token: %w", err)
	}
	var b [32]byte
	rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return localAdminToken(dataDir) // another process made it first
	}
	if err != nil {
		return "", path, fmt.Errorf("admin token: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return "", path, fmt.Errorf("admin token: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", path, fmt.Errorf("admin token: write %s: %w", path, err)
	}
	return token, path, nil
}

// readTokenFile reads a token written by localAdminToken (or by hand).
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("admin token: %s holds no token (one line, no spaces)", path)
	}
	return tok, nil
}
