// Command gohttps is the Go TLS client of the integration tests: it POSTs a
// file's bytes as JSON over HTTPS (HTTP/1.1, crypto/tls from the standard
// library) and prints the response.
//
// Usage:
//
//	gohttps <url> <body-file>
//
// The server is a local test server with a self-signed certificate, so
// certificate verification is disabled. Prints the status code on the first
// line and the response body after it; exits non-zero on any error.
package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gohttps <url> <body-file>")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "gohttps:", err)
		os.Exit(1)
	}
}

func run(url, bodyFile string) error {
	body, err := os.ReadFile(bodyFile)
	if err != nil {
		return err
	}
	transport := &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		// HTTP/1.1 only: no ALPN "h2", and no automatic HTTP/2 upgrade.
		ForceAttemptHTTP2: false,
		TLSNextProto:      map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Println(resp.StatusCode)
	_, err = os.Stdout.Write(respBody)
	return err
}
