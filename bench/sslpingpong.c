/*
 * sslpingpong: an OpenSSL client and server in one process, joined by a BIO
 * pair (no sockets, no kernel I/O), to measure what a uprobe on the hooked
 * SSL calls adds to each call. Built by `./x bench`:
 *
 *     gcc -O2 -Wall -Wextra -o sslpingpong sslpingpong.c -lssl -lcrypto
 *
 * Usage:
 *     sslpingpong plain <iterations> <max_seconds>
 *     sslpingpong ex    <iterations> <max_seconds>
 *         After a warm-up, loops: client SSL_write(64 B) -> server SSL_read ->
 *         server SSL_write(64 B) -> client SSL_read, i.e. 4 hooked calls per
 *         iteration (`ex`: the SSL_write_ex / SSL_read_ex variants). Stops after
 *         <iterations> or <max_seconds>, whichever comes first. Prints
 *             mode=plain iterations=N seconds=S ns_per_iter=X
 *
 *     sslpingpong http  <iterations> <max_seconds>
 *         As plain, but the client writes a 64-byte HTTP/1.1 request and the
 *         server answers with a 64-byte HTTP/1.1 response: traffic whose every
 *         request an enforcement policy judges (`./x bench hold`).
 *
 *     sslpingpong rate <calls_per_sec> <seconds> <size>
 *         Paces client SSL_write calls of <size> bytes (14..16384), each starting
 *         with a unique marker "MARK%010u", for <seconds>; the server reads each
 *         one with SSL_read (so 2 hooked calls per write). Prints
 *             mode=rate pid=P target=R sent=N seconds=S achieved=A
 *
 * Errors go to stderr with exit status 1; usage errors exit with status 2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PING_BYTES 64
#define WARMUP_ITERATIONS 2000
#define MAX_RECORD 16384
#define BIO_PAIR_BYTES (64 * 1024)
#define MARKER_LEN 14 /* "MARK" + 10 digits */

static void die(const char *what) {
    fprintf(stderr, "sslpingpong: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Parses a positive decimal integer argument or exits with status 2. */
static uint64_t parse_arg(const char *s, const char *name, uint64_t max) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v == 0 || v > max) {
        fprintf(stderr, "sslpingpong: bad %s '%s' (1..%llu)\n", name, s,
                (unsigned long long)max);
        exit(2);
    }
    return (uint64_t)v;
}

/* A self-signed P-256 certificate and its key, made in memory. */
static void make_cert(EVP_PKEY **key_out, X509 **cert_out) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    if (key == NULL || cert == NULL) die("key generation");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost",
                               -1, -1, 0);
    X509_set_issuer_name(cert, name);
    if (X509_sign(cert, key, EVP_sha256()) == 0) die("X509_sign");
    *key_out = key;
    *cert_out = cert;
}

/* Client and server SSL objects joined by a BIO pair, handshake completed. */
struct pair {
    SSL *client;
    SSL *server;
};

static SSL_CTX *make_ctx(const SSL_METHOD *method) {
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) die("SSL_CTX_new");
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION)) die("set_min_proto_version");
    return ctx;
}

/* One handshake step for `ssl`; returns 1 when its handshake is complete. */
static int handshake_step(SSL *ssl, const char *side) {
    int r = SSL_do_handshake(ssl);
    if (r == 1) return 1;
    int err = SSL_get_error(ssl, r);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
        fprintf(stderr, "sslpingpong: %s handshake error %d\n", side, err);
        die("SSL_do_handshake");
    }
    return 0;
}

static struct pair make_pair(void) {
    EVP_PKEY *key;
    X509 *cert;
    make_cert(&key, &cert);
    SSL_CTX *sctx = make_ctx(TLS_server_method());
    SSL_CTX *cctx = make_ctx(TLS_client_method());
    if (SSL_CTX_use_certificate(sctx, cert) != 1) die("use_certificate");
    if (SSL_CTX_use_PrivateKey(sctx, key) != 1) die("use_PrivateKey");
    /* No session tickets: the client's first SSL_read would otherwise consume them. */
    SSL_CTX_set_num_tickets(sctx, 0);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);

    struct pair p = {SSL_new(cctx), SSL_new(sctx)};
    if (p.client == NULL || p.server == NULL) die("SSL_new");
    BIO *cbio = NULL, *sbio = NULL;
    if (BIO_new_bio_pair(&cbio, BIO_PAIR_BYTES, &sbio, BIO_PAIR_BYTES) != 1)
        die("BIO_new_bio_pair");
    SSL_set_bio(p.client, cbio, cbio);
    SSL_set_bio(p.server, sbio, sbio);
    SSL_set_connect_state(p.client);
    SSL_set_accept_state(p.server);

    int c_done = 0, s_done = 0;
    for (int i = 0; i < 100 && !(c_done && s_done); i++) {
        if (!c_done) c_done = handshake_step(p.client, "client");
        if (!s_done) s_done = handshake_step(p.server, "server");
    }
    if (!(c_done && s_done)) die("handshake (did not complete in 100 steps)");
    if (SSL_version(p.client) != TLS1_3_VERSION) die("TLS 1.3 negotiation");
    return p;
}

/* Writes all `len` bytes in one call; `ex` selects SSL_write_ex. */
static void write_all(SSL *ssl, const char *buf, size_t len, int ex) {
    if (ex) {
        size_t written = 0;
        if (SSL_write_ex(ssl, buf, len, &written) != 1 || written != len) die("SSL_write_ex");
    } else {
        if (SSL_write(ssl, buf, (int)len) != (int)len) die("SSL_write");
    }
}

/* Reads one record's worth; fails unless `want` bytes arrive in one call. */
static void read_exact(SSL *ssl, char *buf, size_t cap, size_t want, int ex) {
    if (ex) {
        size_t got = 0;
        if (SSL_read_ex(ssl, buf, cap, &got) != 1 || got != want) die("SSL_read_ex");
    } else {
        if (SSL_read(ssl, buf, (int)cap) != (int)want) die("SSL_read");
    }
}

/* 64-byte HTTP/1.1 request and response for the `http` mode. */
static const char HTTP_PING[] = "GET /ping HTTP/1.1\r\nHost: bench\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
static const char HTTP_PONG[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: bbbbbbbbbbbbbbbbb\r\n\r\n";
_Static_assert(sizeof HTTP_PING - 1 == PING_BYTES, "HTTP_PING is 64 bytes");
_Static_assert(sizeof HTTP_PONG - 1 == PING_BYTES, "HTTP_PONG is 64 bytes");

static void ping_pong(const struct pair *p, int ex, int http) {
    char ping[PING_BYTES], pong[PING_BYTES], in[MAX_RECORD];
    if (http) {
        memcpy(ping, HTTP_PING, PING_BYTES);
        memcpy(pong, HTTP_PONG, PING_BYTES);
    } else {
        memset(ping, 'p', sizeof ping);
        memset(pong, 'q', sizeof pong);
    }
    write_all(p->client, ping, sizeof ping, ex);
    read_exact(p->server, in, sizeof in, sizeof ping, ex);
    write_all(p->server, pong, sizeof pong, ex);
    read_exact(p->client, in, sizeof in, sizeof pong, ex);
}

static int run_pingpong(int ex, int http, uint64_t iterations, uint64_t max_seconds) {
    struct pair p = make_pair();
    uint64_t warm_end = now_ns() + 2000000000u;
    for (int i = 0; i < WARMUP_ITERATIONS && now_ns() < warm_end; i++) ping_pong(&p, ex, http);

    uint64_t start = now_ns();
    uint64_t limit = start + max_seconds * 1000000000u;
    uint64_t done = 0, end = start;
    while (done < iterations) {
        ping_pong(&p, ex, http);
        done++;
        if ((done & 63) == 0 && (end = now_ns()) >= limit) break;
    }
    end = now_ns();
    double secs = (double)(end - start) / 1e9;
    printf("mode=%s iterations=%llu seconds=%.3f ns_per_iter=%.1f\n",
           http ? "http" : (ex ? "ex" : "plain"),
           (unsigned long long)done, secs, (double)(end - start) / (double)done);
    return 0;
}

/* Client SSL_write of `len` bytes starting with marker `n`; the server reads it. */
static void send_marked(const struct pair *p, char *buf, size_t len, char *in, uint32_t n) {
    char mark[MARKER_LEN + 1];
    snprintf(mark, sizeof mark, "MARK%010u", n);
    memcpy(buf, mark, MARKER_LEN);
    write_all(p->client, buf, len, 0);
    read_exact(p->server, in, MAX_RECORD, len, 0);
}

/* Sleeps until `deadline` when it is far enough ahead, else returns at once. */
static void pace_until(uint64_t deadline) {
    uint64_t t = now_ns();
    if (deadline <= t + 20000) return; /* under 20 us: catch up by spinning */
    uint64_t wait = deadline - t;
    if (wait > 1000000) wait = 1000000;
    struct timespec ts = {0, (long)wait};
    nanosleep(&ts, NULL);
}

static int run_rate(uint64_t rate, uint64_t seconds, uint64_t size) {
    struct pair p = make_pair();
    static char buf[MAX_RECORD], in[MAX_RECORD];
    memset(buf, 'x', sizeof buf);
    memcpy(buf, "WARMUP", 6);
    for (int i = 0; i < 100; i++) {
        write_all(p.client, buf, size, 0);
        read_exact(p.server, in, sizeof in, size, 0);
    }

    uint64_t total = rate * seconds;
    uint64_t start = now_ns();
    uint64_t duration = seconds * 1000000000u;
    uint64_t sent = 0, elapsed = 0;
    while (sent < total && (elapsed = now_ns() - start) < duration) {
        /* Calls due by now; send them (a short burst when late), then wait. */
        uint64_t due = (uint64_t)((double)elapsed * (double)rate / 1e9) + 1;
        if (due > total) due = total;
        for (uint64_t k = 0; sent < due && k < 4096; k++, sent++)
            send_marked(&p, buf, size, in, (uint32_t)sent);
        pace_until(start + (uint64_t)((double)sent * 1e9 / (double)rate));
    }
    elapsed = now_ns() - start;
    double secs = (double)elapsed / 1e9;
    printf("mode=rate pid=%d target=%llu sent=%llu seconds=%.3f achieved=%.0f\n", (int)getpid(),
           (unsigned long long)rate, (unsigned long long)sent, secs, (double)sent / secs);
    return 0;
}

static int usage(void) {
    fprintf(stderr,
            "usage: sslpingpong plain|ex|http <iterations> <max_seconds>\n"
            "       sslpingpong rate <calls_per_sec> <seconds> <size>\n");
    return 2;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && (strcmp(argv[1], "plain") == 0 || strcmp(argv[1], "ex") == 0 ||
                      strcmp(argv[1], "http") == 0)) {
        uint64_t n = parse_arg(argv[2], "iterations", UINT64_C(1) << 40);
        uint64_t secs = parse_arg(argv[3], "max_seconds", 3600);
        return run_pingpong(strcmp(argv[1], "ex") == 0, strcmp(argv[1], "http") == 0, n, secs);
    }
    if (argc == 5 && strcmp(argv[1], "rate") == 0) {
        uint64_t rate = parse_arg(argv[2], "calls_per_sec", 100000000);
        uint64_t secs = parse_arg(argv[3], "seconds", 3600);
        uint64_t size = parse_arg(argv[4], "size", MAX_RECORD);
        if (size < MARKER_LEN) {
            fprintf(stderr, "sslpingpong: size must be at least %d\n", MARKER_LEN);
            return 2;
        }
        if (rate * secs > UINT32_MAX) {
            fprintf(stderr, "sslpingpong: rate * seconds must fit the 10-digit marker\n");
            return 2;
        }
        return run_rate(rate, secs, size);
    }
    return usage();
}
