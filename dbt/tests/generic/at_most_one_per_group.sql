{#- Fails on each group with more than one row, e.g. two title layers for one poster and model
    version. Narrow the rows with the test's `where` config. -#}
{% test at_most_one_per_group(model, group_by) %}
select {{ group_by | join(", ") }}, count(*) as n
from {{ model }}
group by {{ group_by | join(", ") }}
having count(*) > 1
{% endtest %}
