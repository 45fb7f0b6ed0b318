/*
 * Minimal HTTPS client linked statically against OpenSSL: the test subject for
 * sensor/src/binary/stripped.rs, which must find SSL_write, SSL_read, their
 * _ex variants, SSL_free and SSL_ctrl in a stripped copy of it, and for the
 * capture test of such a copy (tests/tests/tls_stacks.rs).
 *
 * Build (Debian: libssl-dev provides libssl.a and libcrypto.a):
 *   gcc -O2 client.c -o client -Wl,-Bstatic -lssl -lcrypto -Wl,-Bdynamic -ldl -pthread
 *   strip -o client.stripped client
 * Run: ./client HOST [PORT [PATH]]   (GET PATH, default /, over TLS; the
 * response on stdout; the server's certificate is not verified)
 */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

int main(int argc, char **argv) {
    const char *host = argc > 1 ? argv[1] : "localhost";
    const char *port = argc > 2 ? argv[2] : "443";
    const char *path = argc > 3 ? argv[3] : "/";

    struct addrinfo hints, *res;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        fprintf(stderr, "cannot resolve %s\n", host);
        return 2;
    }
    int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        perror("connect");
        return 2;
    }
    freeaddrinfo(res);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, host);
    if (SSL_connect(ssl) != 1) {
        ERR_print_errors_fp(stderr);
        return 3;
    }

    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host);
    if (n < 0 || n >= (int)sizeof req) {
        fprintf(stderr, "request too long\n");
        return 2;
    }
    if (SSL_write(ssl, req, n) != n) {
        ERR_print_errors_fp(stderr);
        return 4;
    }
    char buf[4096];
    int r;
    while ((r = SSL_read(ssl, buf, sizeof buf)) > 0)
        fwrite(buf, 1, (size_t)r, stdout);

    SSL_shutdown(ssl);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(fd);
    return 0;
}
