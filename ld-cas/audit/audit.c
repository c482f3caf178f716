/* The ld-cas audit module: a libc-free shared object that glibc's ld.so loads through
 * DT_AUDIT. It only forwards: ld-cas, which stays mapped after the hand-over, writes the
 * addresses of its own callbacks into `ldcas_hook` (found by its magic words) before the
 * module is given to ld.so. Without callbacks it changes nothing.
 *
 * Built by ld-cas/build.rs with `-nostdlib -shared`; it has no DT_NEEDED, no relocations
 * and no libc, so loading it costs ld.so a handful of system calls. */

typedef unsigned long uptr;

struct ldcas_hook {
	uptr magic[2];
	char *(*objsearch)(const char *name, unsigned int flag, const uptr *requester);
	void (*preinit)(void);
};

#define LA_SER_ORIG 0x01

__attribute__((visibility("hidden"), used, aligned(16)))
struct ldcas_hook ldcas_hook = { { 0x6f6f682d7361636cUL, 0x3176312d6b6f6f68UL }, 0, 0 };

unsigned int la_version(unsigned int version)
{
	return version;
}

char *la_objsearch(const char *name, uptr *cookie, unsigned int flag)
{
	struct ldcas_hook *volatile h = &ldcas_hook;
	if (h->objsearch)
		return h->objsearch(name, flag, cookie ? (const uptr *)*cookie : 0);
	return (char *)name;
}

void la_preinit(uptr *cookie)
{
	(void)cookie;
	struct ldcas_hook *volatile h = &ldcas_hook;
	if (h->preinit)
		h->preinit();
}
