/* Start-up timer: runs each command in turn (interleaved rounds, so drift and noise hit
 * every variant alike; each round in its own order, a shuffle from a fixed seed, so none
 * always runs right after the same neighbour) with vfork+execv, and reports per command
 * the median, 10th percentile and mean wall time, and the median of its per-round
 * difference from the baseline command (the paired difference: the noise common to one
 * round cancels), in microseconds, tab-separated.
 *
 * PRIME untimed runs of the same command come right before each timed run. A program
 * timed right after others that load the same files (its loader, its libc) starts sooner,
 * by tens of µs here, than one whose files were not used since; without priming, variants
 * that share their files with more of the others (the system's ld.so is shared by most)
 * gain from it in every round, and the paired differences measure which variants share
 * files as much as the variants. Primed, each timed run follows runs of itself.
 *
 * usage: spawn ROUNDS WARMUP PRIME BASELINE PROGRAM...   (BASELINE: 0-based index of a
 * PROGRAM; WARMUP: untimed rounds first) */
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
	if (argc < 6)
		return 2;
	int rounds = atoi(argv[1]), warmup = atoi(argv[2]), prime = atoi(argv[3]);
	int base = atoi(argv[4]), n = argc - 5;
	char **progs = argv + 5;
	if (rounds < 1 || prime < 0 || base < 0 || base >= n)
		return 2;
	double *t = calloc((size_t)rounds * n, sizeof *t);
	double *d = calloc((size_t)rounds, sizeof *d);
	for (int r = 0; r < warmup; r++)
		for (int i = 0; i < n; i++)
			run(progs[i]);
	int *order = calloc((size_t)n, sizeof *order);
	unsigned long long seed = 0x9e3779b97f4a7c15ull;
	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < n; k++)
			order[k] = k;
		for (int k = n - 1; k > 0; k--) {
			/* xorshift64: the same orders every run */
			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			int j = (int)(seed % (unsigned long long)(k + 1)), tmp = order[k];
			order[k] = order[j];
			order[j] = tmp;
		}
		for (int k = 0; k < n; k++) {
			for (int p = 0; p < prime; p++)
				run(progs[order[k]]);
			t[order[k] * rounds + r] = run(progs[order[k]]);
		}
	}
	for (int i = 0; i < n; i++) {
		double *x = t + i * rounds, *b = t + base * rounds, sum = 0;
		for (int r = 0; r < rounds; r++)
			d[r] = x[r] - b[r];
		qsort(d, rounds, sizeof *d, cmp);
		double paired = d[rounds / 2];
		for (int r = 0; r < rounds; r++)
			sum += x[r];
		double *sorted = calloc((size_t)rounds, sizeof *sorted);
		for (int r = 0; r < rounds; r++)
			sorted[r] = x[r];
		qsort(sorted, rounds, sizeof *sorted, cmp);
		printf("%s\t%.1f\t%.1f\t%.1f\t%.1f\n", progs[i], sorted[rounds / 2], sorted[rounds / 10],
		       sum / rounds, paired);
		free(sorted);
	}
	return 0;
}
