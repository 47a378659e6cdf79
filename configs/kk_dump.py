"""kk_uniform with DUMP's curriculum: sources (K&K sizes N = 3..7) drawn from
softmax(UCB / 0.1), UCB = mean |advantage| over the source's last 300 responses
+ sqrt(2 ln(N+1) / (n_j+1)) ("DUMP: Automated Distribution-Level Curriculum Learning")."""

from configs import kk_uniform


def get_config():
    c = kk_uniform.get_config()
    c.name = "kk_dump"
    c.data.curriculum = "dump"
    c.data.dump_c = 1.0
    c.data.dump_tau = 0.1
    c.data.dump_window = 300
    return c
