// SPDX-License-Identifier: GPL-2.0
/*
 * twhelper: the sockets of the QEMU tests that curl and nginx cannot make.
 * Built static by tests/kernels.rs (gcc -static), run in the guest.
 *
 *   twhelper tcp-serve PORT WORKERS   WORKERS processes accept on 127.0.0.1:PORT,
 *                                     each reading a connection to its end, then
 *                                     closing it (the client keeps TIME_WAIT)
 *   twhelper tcp-clients PORT N       N connections in a row: connect, one byte, close
 *   twhelper tcp-parked PORT          a client orphaned in FIN_WAIT1 with unread
 *                                     data, parked in FIN_WAIT2 once the server
 *                                     reads it, turned TIME_WAIT by the server's
 *                                     close 300 ms later
 *   twhelper tcp-abort PORT           a client that sends a few bytes to a server
 *                                     reading them, then closes with SO_LINGER 0
 *                                     (a reset instead of a FIN); prints the
 *                                     client's port and the bytes it sent
 *   twhelper dccp-serve PORT          accepts one DCCP connection, reads to its end
 *   twhelper dccp-client PORT         one DCCP connection that the client closes
 *                                     (the client keeps DCCP's TIME_WAIT)
 *
 * Exits 0 on success, 1 with a message on the first failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SOCK_DCCP
#define SOCK_DCCP 6
#endif
#ifndef IPPROTO_DCCP
#define IPPROTO_DCCP 33
#endif
#define SOL_DCCP 269
#define DCCP_SOCKOPT_SERVICE 2
#define DCCP_SERVICE 42

static void die(const char *what)
{
	fprintf(stderr, "twhelper: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static struct sockaddr_in loopback(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int make_socket(int dccp)
{
	int one = 1, service = htonl(DCCP_SERVICE);
	int fd = dccp ? socket(AF_INET, SOCK_DCCP, IPPROTO_DCCP) : socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		die("socket");
	if (dccp && setsockopt(fd, SOL_DCCP, DCCP_SOCKOPT_SERVICE, &service, sizeof(service)))
		die("DCCP service code");
	if (!dccp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)))
		die("SO_REUSEADDR");
	return fd;
}

static int listen_on(int port, int dccp, int rcvbuf)
{
	struct sockaddr_in a = loopback(port);
	int fd = make_socket(dccp);

	if (rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)))
		die("SO_RCVBUF");
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 128))
		die("listen");
	return fd;
}

static int connect_to(int port, int dccp)
{
	struct sockaddr_in a = loopback(port);
	int fd = make_socket(dccp);

	if (connect(fd, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	return fd;
}

/* Reads until the peer's end (or an error), then closes. */
static void drain_and_close(int fd)
{
	char buf[65536];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
}

#define MAX_WORKERS 8
static pid_t worker_pids[MAX_WORKERS];
static int nr_workers;

/* SIGTERM to the parent ends its workers too. */
static void end_workers(int sig)
{
	for (int i = 0; i < nr_workers; i++)
		kill(worker_pids[i], SIGKILL);
	_exit(sig == SIGTERM ? 0 : 1);
}

static int tcp_serve(int port, int workers)
{
	int fd = listen_on(port, 0, 0);

	signal(SIGTERM, end_workers);
	for (; nr_workers < workers && nr_workers < MAX_WORKERS; nr_workers++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			signal(SIGTERM, SIG_DFL);
			for (;;) {
				int c = accept(fd, NULL, NULL);

				if (c < 0)
					die("accept");
				drain_and_close(c);
			}
		}
		worker_pids[nr_workers] = pid;
	}
	while (wait(NULL) > 0)
		;
	return 0;
}

static int tcp_clients(int port, int n)
{
	for (int i = 0; i < n; i++) {
		int fd = connect_to(port, 0);

		if (write(fd, "x", 1) != 1)
			die("write");
		close(fd);
	}
	return 0;
}

static int tcp_parked(int port)
{
	static char chunk[4096];
	int lfd = listen_on(port, 0, 4096);
	int client = connect_to(port, 0);
	int server = accept(lfd, NULL, NULL);

	if (server < 0)
		die("accept");
	/* Data the server does not read yet: the client's FIN waits behind it. */
	fcntl(client, F_SETFL, O_NONBLOCK);
	while (write(client, chunk, sizeof(chunk)) > 0)
		;
	if (errno != EAGAIN)
		die("filling the window");
	shutdown(client, SHUT_WR);
	sleep_ms(400);
	close(client); /* orphaned in FIN_WAIT1 */
	while (read(server, chunk, sizeof(chunk)) > 0)
		; /* its data acked: the client parks in FIN_WAIT2 */
	sleep_ms(300);
	close(server); /* its FIN: the client turns TIME_WAIT */
	sleep_ms(300);
	return 0;
}

static int tcp_abort(int port)
{
	static const char data[] = "abort";
	const size_t len = sizeof(data) - 1;
	const struct linger reset = { .l_onoff = 1, .l_linger = 0 };
	const struct timeval bound = { .tv_sec = 5 };
	struct sockaddr_in local;
	socklen_t local_len = sizeof(local);
	char buf[sizeof(data)];
	size_t got = 0;
	ssize_t n = 0;
	int lfd = listen_on(port, 0, 0);
	int client = connect_to(port, 0);
	int server = accept(lfd, NULL, NULL);

	if (server < 0)
		die("accept");
	if (setsockopt(server, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound)))
		die("SO_RCVTIMEO");
	if (getsockname(client, (struct sockaddr *)&local, &local_len))
		die("getsockname");
	if (write(client, data, len) != (ssize_t)len)
		die("write");
	while (got < len && (n = read(server, buf + got, len - got)) > 0)
		got += n;
	if (got < len)
		die("reading the client's bytes");
	if (setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)))
		die("SO_LINGER");
	close(client); /* a reset, no FIN */
	n = read(server, buf, sizeof(buf));
	if (n >= 0) {
		fprintf(stderr, "twhelper: the server read %zd bytes, not the reset\n", n);
		return 1;
	}
	if (errno != ECONNRESET)
		die("reading the reset");
	close(server);
	close(lfd);
	printf("%d %zu\n", ntohs(local.sin_port), len);
	return 0;
}

static int dccp_serve(int port)
{
	int fd = listen_on(port, 1, 0);
	int c = accept(fd, NULL, NULL);

	if (c < 0)
		die("accept");
	drain_and_close(c);
	close(fd);
	return 0;
}

static int dccp_client(int port)
{
	int fd = connect_to(port, 1);

	if (write(fd, "x", 1) != 1)
		die("write");
	sleep_ms(100);
	close(fd);
	sleep_ms(300);
	return 0;
}

int main(int argc, char **argv)
{
	int port = argc > 2 ? atoi(argv[2]) : 0;
	int n = argc > 3 ? atoi(argv[3]) : 0;

	if (port <= 0)
		goto usage;
	if (!strcmp(argv[1], "tcp-serve") && n > 0)
		return tcp_serve(port, n);
	if (!strcmp(argv[1], "tcp-clients") && n > 0)
		return tcp_clients(port, n);
	if (!strcmp(argv[1], "tcp-parked"))
		return tcp_parked(port);
	if (!strcmp(argv[1], "tcp-abort"))
		return tcp_abort(port);
	if (!strcmp(argv[1], "dccp-serve"))
		return dccp_serve(port);
	if (!strcmp(argv[1], "dccp-client"))
		return dccp_client(port);
usage:
	fprintf(stderr, "usage: twhelper tcp-serve|tcp-clients PORT N | tcp-parked|tcp-abort|dccp-serve|dccp-client PORT\n");
	return 2;
}
