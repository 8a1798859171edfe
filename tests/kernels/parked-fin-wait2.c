/*
 * parked-fin-wait2: makes one TCP connection on 127.0.0.1 whose client is
 * parked by the kernel in a FIN_WAIT2 timewait socket and then turned into
 * TIME_WAIT by the server's FIN, the case where the timer probes see no
 * event at that moment (tests/timewait.rs, tests/kernels_parked.rs).
 *
 *   parked-fin-wait2 [-m unacked|late] [-w MS] [-g MS] [-b same|other|any] [-t] [-z HZ] PORT
 *
 * Server and client run in this one process (no threads: loopback needs
 * none). Build: cc -O2 -static -o parked-fin-wait2 parked-fin-wait2.c
 * (static, so that it runs in the QEMU guest as is).
 *
 * -m unacked (default): the server's listener has SO_RCVBUF 4096 and the
 *    server does not read; the client sends without blocking until EAGAIN,
 *    shutdown(SHUT_WR)s (ESTABLISHED -> FIN_WAIT1, its FIN queued behind
 *    data the server has not acked), waits -w MS (default 400) and close()s
 *    (the kernel reports FIN_WAIT1 -> FIN_WAIT1). The server then reads
 *    until EOF: its ACKs take the orphaned client to FIN_WAIT2, which the
 *    kernel parks in a timewait socket with substate FIN_WAIT2 (timer armed
 *    for tcp_fin_timeout, 60 s).
 * -m late: the client sends "GET", the server answers "hello", the client
 *    reads it and close()s; the server reads EOF and its delayed ACK of the
 *    client's FIN goes out alone: the client is parked the same way.
 * Either way the server close()s -g MS (default 300) after the client was
 * seen parked (its state 05 in /proc/self/net/tcp). The server's FIN turns
 * the parked socket into TIME_WAIT: tcp_timewait_state_process() re-arms
 * its timer for TCP_TIMEWAIT_LEN (60 s) with mod_timer_pending(). When the
 * new expiry falls in the timer wheel bucket of the old one, __mod_timer()
 * only updates timer->expires and no timer tracepoint fires.
 *
 * -b same (default) | other | any: chooses when the client is parked so
 *    that the TIME_WAIT re-arm lands in the same wheel bucket as the
 *    FIN_WAIT2 arm (same), in the next one (other: the kernel then shows
 *    timer_cancel + timer_start), or does not care (any). It reads jiffies
 *    from /proc/timer_list; HZ is measured from it unless -z HZ is given.
 *    With same or other, the run fails (exit 3) when the bucket was missed.
 * -t: a witness. Records timer_start of tw_timer_handler in a tracefs
 *    instance of its own (clock mono) and reports how many fired when the
 *    client was parked and when the server's FIN arrived.
 *
 * stdout, one "key=value" line each, flushed at once:
 *   client_port=N         as soon as the client is connected
 *   netns=N               the network namespace's inode (as tcpstate's "netns")
 *   ts_park_ns=N          CLOCK_MONOTONIC when the client was seen parked
 *   ts_fin_ns=N           CLOCK_MONOTONIC just before the server's close()
 *   hz=N granule=N park_jiffies=N fin_jiffies=N bucket=same|other|unknown
 *   witness=ok park_starts=N fin_starts=N   (or witness=unavailable|ambiguous ...)
 *   done
 * The client's timewait socket is left in TIME_WAIT (60 s); end it by
 * ending the network namespace. Exit 0 on success, 1 on a failure (said on
 * stderr), 2 on usage, 3 when the wanted bucket was missed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "parked-fin-wait2: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static unsigned long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* ---- jiffies and the timer wheel (kernel/time/timer.c) ---- */

/* jiffies and "now at" (ns) from /proc/timer_list; 0 when unreadable. */
static unsigned long long read_jiffies(unsigned long long *at_ns)
{
	static char buf[1 << 16];
	unsigned long long j = 0;
	int fd = open("/proc/timer_list", O_RDONLY);
	if (fd < 0)
		return 0;
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += n;
	close(fd);
	buf[len] = 0;
	char *p = strstr(buf, "now at ");
	if (at_ns)
		*at_ns = p ? strtoull(p + 7, NULL, 10) : 0;
	p = strstr(buf, "\njiffies: ");
	if (p)
		j = strtoull(p + 10, NULL, 10);
	return j;
}

static long measure_hz(void)
{
	unsigned long long t0, t1;
	unsigned long long j0 = read_jiffies(&t0);
	sleep_ms(200);
	unsigned long long j1 = read_jiffies(&t1);
	if (!j0 || !j1 || t1 <= t0)
		return 0;
	double hz = (double)(j1 - j0) * 1e9 / (double)(t1 - t0);
	static const long known[] = { 100, 250, 300, 1000 };
	long best = known[0];
	for (unsigned i = 1; i < sizeof(known) / sizeof(known[0]); i++)
		if (abs((int)(known[i] - hz)) < abs((int)(best - hz)))
			best = known[i];
	return best;
}

/* Granularity, in jiffies, of the wheel level a timer due in delta jiffies
 * goes to: level n starts at 63 << 3(n-1) jiffies, its buckets 8^n wide. */
static unsigned long long granule_for(unsigned long long delta)
{
	unsigned lvl = 0;
	while (lvl < 8 && delta >= (63ull << (3 * lvl)))
		lvl++;
	return 1ull << (3 * lvl);
}

static long hz;
static unsigned long long T, G; /* 60 s in jiffies; its bucket width */

static unsigned long long phase(unsigned long long j)
{
	return (j + T) % G;
}

static unsigned long long bucket(unsigned long long j)
{
	return (j + T) / G;
}

/* Waits until jiffies are at a phase where a timer armed trig_j jiffies
 * later and re-armed gap_j after that stays in its bucket (same) or moves
 * to the next one (other). */
static void align(const char *want, long trig_j, long gap_j)
{
	if (!strcmp(want, "any") || !hz)
		return;
	long margin = hz / 5 > 8 ? hz / 5 : 8; /* 200 ms: QEMU without KVM is slow */
	for (int tries = 0; tries < 20; tries++) {
		unsigned long long j = read_jiffies(NULL);
		long p = (long)phase(j), wait;
		if (!strcmp(want, "same")) {
			if (p >= 2 && p + trig_j + gap_j + margin < (long)G)
				return;
			wait = p < 2 ? 2 - p : (long)G - p + 2;
		} else {
			long target = (long)G - trig_j - gap_j / 2;
			if (labs(p - target) <= 3)
				return;
			wait = ((target - p) % (long)G + (long)G) % (long)G;
		}
		sleep_ms(wait * 1000 / hz + 1);
	}
}

/* ---- /proc/self/net/tcp ---- */

/* State (hex in the file) of the IPv4 socket with local port lport and
 * remote port rport (0: any); -1 when there is none. */
static int tcp_state(int lport, int rport)
{
	char line[512];
	int st = -1;
	FILE *f = fopen("/proc/self/net/tcp", "r");
	if (!f)
		die("/proc/self/net/tcp: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned la, lp, ra, rp, s;
		if (sscanf(line, " %*d: %x:%x %x:%x %x", &la, &lp, &ra, &rp, &s) != 5)
			continue;
		if ((int)lp == lport && (!rport || (int)rp == rport)) {
			st = (int)s;
			break;
		}
	}
	fclose(f);
	return st;
}

/* Polls (1 ms) until the client's socket is in state want; 5 s at most. */
static void wait_state(int lport, int rport, int want, const char *what)
{
	for (int i = 0; i < 5000; i++) {
		if (tcp_state(lport, rport) == want)
			return;
		sleep_ms(1);
	}
	die("timed out waiting for %s (state %02X, now %02X)", what, want, tcp_state(lport, rport));
}

/* ---- the witness: a tracefs instance of our own ---- */

static char inst[256];

static int write_file(const char *name, const char *val)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", inst, name);
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, val, strlen(val));
	close(fd);
	return n == (ssize_t)strlen(val) ? 0 : -1;
}

static void witness_stop(void)
{
	if (!inst[0])
		return;
	write_file("events/timer/timer_start/enable", "0");
	rmdir(inst);
	inst[0] = 0;
}

static int witness_start(void)
{
	const char *roots[] = { "/sys/kernel/tracing", "/sys/kernel/debug/tracing" };
	char line[256], filter[64] = "";
	FILE *f = fopen("/proc/kallsyms", "r");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long addr;
		char type, name[128];
		if (sscanf(line, "%llx %c %127s", &addr, &type, name) == 3 && !strcmp(name, "tw_timer_handler")) {
			if (addr) /* 0 when kallsyms hides addresses */
				snprintf(filter, sizeof(filter), "function == 0x%llx", addr);
			break;
		}
	}
	if (f)
		fclose(f);
	if (!filter[0])
		return -1;
	/* `ip netns exec` mounts a sysfs of its own, without tracefs. */
	if (access("/sys/kernel/tracing/instances", F_OK))
		mount("nodev", "/sys/kernel/tracing", "tracefs", 0, NULL);
	for (unsigned i = 0; i < 2; i++) {
		char dir[128];
		snprintf(dir, sizeof(dir), "%s/instances", roots[i]);
		if (access(dir, F_OK))
			continue;
		snprintf(inst, sizeof(inst), "%s/parked-fin-wait2-%d", dir, (int)getpid());
		if (mkdir(inst, 0755)) {
			inst[0] = 0;
			return -1;
		}
		atexit(witness_stop);
		if (write_file("trace_clock", "mono") || write_file("events/timer/timer_start/filter", filter) ||
		    write_file("events/timer/timer_start/enable", "1")) {
			witness_stop();
			return -1;
		}
		return 0;
	}
	return -1;
}

/* Reads the instance's timer_start events (already filtered to
 * tw_timer_handler) and counts those of the client's timer: the one armed
 * in [park0, park1], and then how often it was started in [fin0, fin1]. */
static void witness_report(unsigned long long park0, unsigned long long park1, unsigned long long fin0,
			   unsigned long long fin1)
{
	char path[512], line[1024], timer[64] = "", expires[2][32] = { "", "" };
	int park_starts = 0, fin_starts = 0, ambiguous = 0, other_fin = 0;
	write_file("events/timer/timer_start/enable", "0");
	for (int pass = 0; pass < 2; pass++) {
		snprintf(path, sizeof(path), "%s/trace", inst);
		FILE *f = fopen(path, "r");
		if (!f) {
			say("witness=unavailable reason=trace");
			return;
		}
		while (fgets(line, sizeof(line), f)) {
			char *ev = strstr(line, ": timer_start: timer=");
			if (line[0] == '#' || !ev)
				continue;
			/* "... [001] ..s1. 1234.567890: timer_start: ..." */
			char *colon = ev;
			char *sp = colon;
			while (sp > line && sp[-1] != ' ')
				sp--;
			double secs = strtod(sp, NULL);
			unsigned long long t = (unsigned long long)(secs * 1e9);
			char tm[64] = "";
			sscanf(ev + strlen(": timer_start: timer="), "%63s", tm);
			char *ex = strstr(ev, "expires=");
			/* trace timestamps have microseconds: widen by 2 us */
			if (pass == 0 && t + 2000 >= park0 && t <= park1 + 2000) {
				if (timer[0] && strcmp(timer, tm))
					ambiguous = 1;
				snprintf(timer, sizeof(timer), "%s", tm);
				park_starts++;
				if (ex)
					sscanf(ex + 8, "%31s", expires[0]);
			}
			if (pass == 1 && t + 2000 >= fin0 && t <= fin1 + 2000) {
				if (!strcmp(timer, tm)) {
					fin_starts++;
					if (ex)
						sscanf(ex + 8, "%31s", expires[1]);
				} else {
					other_fin++;
				}
			}
		}
		fclose(f);
	}
	if (!timer[0] || ambiguous)
		say("witness=ambiguous park_starts=%d fin_starts=%d", park_starts, fin_starts);
	else
		say("witness=ok park_starts=%d fin_starts=%d park_expires=%s fin_expires=%s other_tw_starts_at_fin=%d",
		    park_starts, fin_starts, expires[0], fin_starts ? expires[1] : "-", other_fin);
}

/* ---- the connection ---- */

static void usage(void)
{
	fprintf(stderr, "usage: parked-fin-wait2 [-m unacked|late] [-w MS] [-g MS] [-b same|other|any] [-t] "
			"[-z HZ] PORT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *mode = "unacked", *want = "same";
	long close_ms = 400, gap_ms = 300;
	int witness = 0, opt;
	while ((opt = getopt(argc, argv, "m:w:g:b:tz:")) != -1) {
		switch (opt) {
		case 'm': mode = optarg; break;
		case 'w': close_ms = atol(optarg); break;
		case 'g': gap_ms = atol(optarg); break;
		case 'b': want = optarg; break;
		case 't': witness = 1; break;
		case 'z': hz = atol(optarg); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || (strcmp(mode, "unacked") && strcmp(mode, "late")) ||
	    (strcmp(want, "same") && strcmp(want, "other") && strcmp(want, "any")))
		usage();
	int port = atoi(argv[optind]);
	if (port <= 0 || port > 65535)
		usage();

	if (!hz)
		hz = measure_hz();
	if (strcmp(want, "any") && !hz)
		die("cannot read jiffies from /proc/timer_list (give -b any)");
	if (hz) {
		T = 60ull * hz;
		G = granule_for(T);
	}
	if (witness && witness_start())
		say("witness=unavailable reason=tracefs");

	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int one = 1, lis = socket(AF_INET, SOCK_STREAM, 0);
	if (lis < 0)
		die("socket: %s", strerror(errno));
	setsockopt(lis, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (!strcmp(mode, "unacked")) {
		int rcv = 4096; /* inherited by the accepted socket: a tiny window */
		if (setsockopt(lis, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)))
			die("SO_RCVBUF: %s", strerror(errno));
	}
	if (bind(lis, (struct sockaddr *)&sa, sizeof(sa)) || listen(lis, 8))
		die("listen on 127.0.0.1:%d: %s", port, strerror(errno));

	int cl = socket(AF_INET, SOCK_STREAM, 0);
	if (cl < 0 || connect(cl, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect: %s", strerror(errno));
	struct sockaddr_in me;
	socklen_t melen = sizeof(me);
	getsockname(cl, (struct sockaddr *)&me, &melen);
	int cport = ntohs(me.sin_port);
	say("client_port=%d", cport);
	char ns[64] = "";
	if (readlink("/proc/self/ns/net", ns, sizeof(ns) - 1) > 0) /* "net:[4026531840]" */
		say("netns=%llu", strtoull(ns + strcspn(ns, "[") + 1, NULL, 10));
	int srv = accept(lis, NULL, NULL);
	if (srv < 0)
		die("accept: %s", strerror(errno));

	static char buf[65536];
	unsigned long long trig0;
	long trig_j, gap_j = hz ? gap_ms * hz / 1000 : 0;
	if (!strcmp(mode, "unacked")) {
		fcntl(cl, F_SETFL, fcntl(cl, F_GETFL) | O_NONBLOCK);
		size_t sent = 0;
		for (;;) {
			ssize_t n = send(cl, buf, sizeof(buf), 0);
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (n < 0)
				die("send: %s", strerror(errno));
			sent += n;
			if (sent > (64u << 20))
				die("send never blocked (%zu bytes)", sent);
		}
		if (shutdown(cl, SHUT_WR))
			die("shutdown: %s", strerror(errno));
		sleep_ms(close_ms);
		close(cl); /* FIN_WAIT1 -> FIN_WAIT1, orphaned */
		trig_j = 2;
		align(want, trig_j, gap_j);
		trig0 = now_ns();
		size_t got = 0;
		for (;;) {
			ssize_t n = read(srv, buf, sizeof(buf));
			if (n < 0)
				die("server read: %s", strerror(errno));
			if (n == 0)
				break;
			got += n;
		}
		if (got < sent)
			die("server read %zu of %zu bytes", got, sent);
	} else {
		if (write(cl, "GET", 3) != 3 || read(srv, buf, sizeof(buf)) <= 0 || write(srv, "hello", 5) != 5 ||
		    read(cl, buf, sizeof(buf)) != 5)
			die("exchange failed: %s", strerror(errno));
		trig_j = hz ? hz / 25 + 2 : 0; /* the delayed ACK, 40 ms */
		align(want, trig_j, gap_j);
		trig0 = now_ns();
		close(cl);
		if (read(srv, buf, sizeof(buf)) != 0)
			die("server expected EOF");
	}
	wait_state(cport, 0, 0x05, "the client parked in FIN_WAIT2");
	unsigned long long park = now_ns(), park_j = hz ? read_jiffies(NULL) : 0;
	say("ts_park_ns=%llu", park);
	if (!strcmp(want, "same")) {
		/* Sleeps the gap in steps, and closes early rather than let a
		 * late wake-up (a loaded machine) cross the bucket's end. */
		unsigned long long last_j = (bucket(park_j) + 1) * G - T - 4;
		while (now_ns() - park < (unsigned long long)gap_ms * 1000000ull && read_jiffies(NULL) < last_j)
			sleep_ms(gap_ms < 20 ? gap_ms : 20);
	} else {
		sleep_ms(gap_ms);
	}
	unsigned long long fin = now_ns();
	say("ts_fin_ns=%llu", fin);
	close(srv); /* CLOSE_WAIT -> LAST_ACK; the client's timewait socket -> TIME_WAIT */
	unsigned long long fin_j = hz ? read_jiffies(NULL) : 0;
	wait_state(cport, 0, 0x06, "the client in TIME_WAIT");
	for (int i = 0; i < 5000 && tcp_state(port, cport) != -1; i++)
		sleep_ms(1);
	if (tcp_state(port, cport) != -1)
		die("the server's socket did not close");
	unsigned long long fin_end = now_ns();
	close(lis);

	const char *got = "unknown";
	if (hz && park_j && fin_j)
		got = bucket(park_j) == bucket(fin_j) ? "same" : "other";
	say("hz=%ld granule=%llu park_jiffies=%llu fin_jiffies=%llu park_phase=%llu fin_phase=%llu bucket=%s", hz, G,
	    park_j, fin_j, hz ? phase(park_j) : 0, hz ? phase(fin_j) : 0, got);
	if (witness && inst[0])
		witness_report(trig0, park, fin, fin_end);
	witness_stop();
	say("done");
	if (strcmp(want, "any") && strcmp(want, got)) {
		fprintf(stderr, "parked-fin-wait2: wanted the re-arm in the %s bucket, got %s\n", want, got);
		return 3;
	}
	return 0;
}
