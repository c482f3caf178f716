/* Start-up timer: runs each command in turn (interleaved rounds, so drift and noise hit
 * every variant alike) with vfork+execv and reports per-command median, 10th percentile
 * and mean wall time in microseconds, tab-separated.
 *
 * usage: spawn ROUNDS WARMUP PROGRAM... */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

static double run(const char *prog)
{
	char *argv[] = { (char *)prog, 0 };
	double t0 = now_us();
	pid_t pid = vfork();
	if (pid == 0) {
		execv(prog, argv);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
	double t = now_us() - t0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "%s failed\n", prog);
		exit(1);
	}
	return t;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	int rounds = atoi(argv[1]), warmup = atoi(argv[2]), n = argc - 3;
	double *t = calloc((size_t)rounds * n, sizeof *t);
	for (int r = 0; r < warmup; r++)
		for (int i = 0; i < n; i++)
			run(argv[3 + i]);
	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < n; i++)
			t[i * rounds + r] = run(argv[3 + i]);
	for (int i = 0; i < n; i++) {
		double *x = t + i * rounds, sum = 0;
		for (int r = 0; r < rounds; r++)
			sum += x[r];
		qsort(x, rounds, sizeof *x, cmp);
		printf("%s\t%.1f\t%.1f\t%.1f\n", argv[3 + i], x[rounds / 2], x[rounds / 10], sum / rounds);
	}
	return 0;
}
