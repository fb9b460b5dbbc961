"""A bag's user questions and their true answers: what `lionfs replay` asks, and how its answers are scored.

Questions are lionfs_ros/msg/UserQuery messages on the node's query topic (what `lionfs synth --bag` writes, and what
a session recorded with `lionfs record` holds), timed by their header stamp on the camera's clock. True answers are
std_msgs/String JSON objects `{time, query_id, question, answer, kind}` on a topic of their own (the synthetic world
writes them). Answers are scored as `lionfs eval` scores its free-running ones: the same words after lower-casing and
dropping punctuation (`eval.free_running.Answer`), by kind (`eval.qa.accuracy_by_kind`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from lionfs_ros.replay.bag_reader import NS_PER_S, BagReadError
from lionfs_ros.replay.truth import STRING_TYPE

DEFAULT_QUERY_TOPIC = "/lionfs/query"  # lionfs_node's query topic under the /lionfs namespace
DEFAULT_ANSWERS_TOPIC = "/lionfs/ground_truth_answers"
QUERY_TYPE = "lionfs_ros/msg/UserQuery"


@dataclass(frozen=True)
class BagQuestion:
    stamp_s: float  # the UserQuery's header stamp: the camera's clock, like the frames'
    text: str
    query_id: str


def read_questions(bag, topic: str = DEFAULT_QUERY_TOPIC) -> tuple[list[BagQuestion], list[str]]:
    """The bag's questions on `topic` (none if it has no such topic of UserQuery), and notes on what was skipped."""
    found = bag.summary.topic(topic)
    if found is None or found.msgtype != QUERY_TYPE:
        return [], []
    questions, notes = [], []
    try:
        for item in bag.messages([topic]):
            stamp = item.message.header.stamp
            seconds = stamp.sec + stamp.nanosec / NS_PER_S
            questions.append(BagQuestion(seconds if seconds > 0 else item.log_time_ns / NS_PER_S,
                                         str(item.message.text), str(item.message.query_id)))
    except BagReadError as err:
        notes.append(f"questions read only in part: {err.detail}")
    return questions, notes


def read_true_answers(bag, topic: str = DEFAULT_ANSWERS_TOPIC) -> list[dict]:
    """The true answers on `topic` (JSON objects with `query_id` and `answer`); none without that topic."""
    found = bag.summary.topic(topic)
    if found is None or found.msgtype != STRING_TYPE:
        return []
    answers = []
    for item in bag.messages([topic]):
        record = json.loads(str(item.message.data))
        if isinstance(record, dict) and "query_id" in record and "answer" in record:
            answers.append(record)
    return answers


def qa_metrics(responses: list[dict], answers: list[dict]) -> dict:
    """Accuracy of the responses (report dicts with `query_id`) against the true `answers`, by kind, as `lionfs eval`
    computes it; a question with no response counts as wrong. Also each question's row."""
    from lionfs_ros.eval.free_running import Answer
    from lionfs_ros.eval.qa import accuracy_by_kind

    given = {r["query_id"]: r["text"] for r in responses if r.get("query_id")}
    scored = [Answer(a.get("question", ""), str(a["answer"]), given.get(a["query_id"], ""), a.get("kind"))
              for a in answers]
    rows = [{"query_id": a["query_id"], "question": s.question, "truth": s.truth, "answer": s.predicted,
             "kind": s.kind, "correct": s.correct, "answered": a["query_id"] in given} for a, s in zip(answers, scored)]
    return {"accuracy": accuracy_by_kind(scored), "unanswered": sum(not r["answered"] for r in rows), "questions": rows}
