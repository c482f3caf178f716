/* Paired timing of file editors: each round copies SOURCE to TARGET (not timed) and runs
 * each command once on TARGET (vfork + execv + waitpid, timed), the commands in a rotating
 * order. Reports per command the median and 10th percentile of the wall time and the
 * median over rounds of its difference from the first command (the paired difference: the
 * noise a round shares cancels), in microseconds, tab-separated.
 *
 * usage: paired ROUNDS SOURCE TARGET NAME [VAR=VALUE...] CMD [ARGS...] -- NAME ... [-- ...]
 * (TARGET is appended to each command line; VAR=VALUE before CMD is added to that
 * command's environment) */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CMDS 8

extern char **environ;

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void copy(const char *from, const char *to)
{
	static char buf[1 << 20];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0755);
	ssize_t n;
	if (in < 0 || out < 0) {
		perror("copy");
		exit(1);
	}
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n) {
			perror("copy");
			exit(1);
		}
	close(in);
	close(out);
}

static double run(char **argv, char **envp)
{
	double t0 = now_us();
	pid_t pid = vfork();
	if (pid == 0) {
		execve(argv[0], argv, envp);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	double t = now_us() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s failed\n", argv[0]);
		exit(1);
	}
	return t;
}

static double median(double *x, int n)
{
	qsort(x, (size_t)n, sizeof *x, cmp);
	return x[n / 2];
}

int main(int argc, char **argv)
{
	if (argc < 6)
		return 2;
	int rounds = atoi(argv[1]);
	const char *source = argv[2], *target = argv[3];
	char **cmd[MAX_CMDS], **env[MAX_CMDS];
	const char *name[MAX_CMDS];
	int n = 0, nenv = 0;
	while (environ[nenv])
		nenv++;
	for (int i = 4; i < argc && n < MAX_CMDS;) {
		name[n] = argv[i++];
		char **e = calloc((size_t)(nenv + argc + 1), sizeof *e);
		memcpy(e, environ, (size_t)nenv * sizeof *e);
		int ne = nenv;
		while (i < argc && strchr(argv[i], '=') && argv[i][0] != '/')
			e[ne++] = argv[i++];
		env[n] = e;
		int start = i;
		while (i < argc && strcmp(argv[i], "--") != 0)
			i++;
		char **v = calloc((size_t)(i - start + 2), sizeof *v);
		for (int k = start; k < i; k++)
			v[k - start] = argv[k];
		v[i - start] = (char *)target;
		cmd[n++] = v;
		i++; /* skip "--" */
	}
	if (rounds < 1 || n < 1)
		return 2;
	double *t = calloc((size_t)rounds * n, sizeof *t), *d = calloc((size_t)rounds, sizeof *d);
	for (int r = 0; r < rounds + 10; r++)
		for (int k = 0; k < n; k++) {
			int i = (r + k) % n;
			copy(source, target);
			double x = run(cmd[i], env[i]);
			if (r >= 10) /* the first rounds warm up */
				t[i * rounds + r - 10] = x;
		}
	double paired[MAX_CMDS];
	for (int i = 0; i < n; i++) {
		for (int r = 0; r < rounds; r++)
			d[r] = t[i * rounds + r] - t[r];
		paired[i] = median(d, rounds);
	}
	for (int i = 0; i < n; i++) {
		double *x = t + i * rounds;
		double med = median(x, rounds); /* sorts in place: after every pairing */
		printf("%s\t%.1f\t%.1f\t%.1f\n", name[i], med, x[rounds / 10], paired[i]);
	}
	return 0;
}
