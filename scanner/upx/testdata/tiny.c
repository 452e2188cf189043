/* A harmless program: it exits. The table only gives UPX something to pack. */
static const unsigned int table[16384] = {1};
void _start(void) {
	unsigned long s = 0;
	for (int i = 0; i < 16384; i++) s += table[i] * (unsigned)i;
	__asm__ volatile("mov $60, %%eax; mov %0, %%rdi; syscall" :: "r"(s & 1) : "rax", "rdi");
}
