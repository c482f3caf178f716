/* A large (> 50 MB) dynamically linked program for the editor benchmark: 64 MiB of
 * initialised read-only data. */
#include <stdio.h>
#define MB (1024 * 1024)
__attribute__((used)) static const unsigned char blob[64 * MB] = {1, 2, 3};
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", blob[argc]);
    return 0;
}
